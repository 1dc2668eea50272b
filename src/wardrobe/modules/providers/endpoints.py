"""Admin view of the providers: shape, concurrency in use, health, accounts and switches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from wardrobe.core.deps import CacheDep, SessionDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import Principal, require
from wardrobe.core.schemas import Id, InputModel
from wardrobe.modules.providers import account_admin, service, switches
from wardrobe.modules.providers.deps import AccountsDep, HealthDep, ProvidersDep, SlotsDep

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Reader = Annotated[Principal, Depends(require(Permission.CATALOG_READ))]
Switcher = Annotated[Principal, Depends(require(Permission.CATALOG_SWITCH))]
AccountAdmin = Annotated[Principal, Depends(require(Permission.PROVIDERS_MANAGE))]


class ProviderOut(BaseModel):
    slug: str
    kind: str
    enabled: bool
    disabled_reason: str | None
    concurrency_limit: int | None
    in_use: int
    health: dict[str, Any]
    recent_failures: list[dict[str, Any]]
    accounts: list[dict[str, Any]]


class ProviderSwitchIn(InputModel):
    """Take a provider out of service (or back), and why (kept in the audit log)."""

    enabled: bool
    reason: str = Field(min_length=2, max_length=500)


@router.get(
    "/providers",
    summary="Providers with their concurrency use and health",
    response_model=Envelope[list[ProviderOut]],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED),
)
async def list_providers(
    _: Reader,
    session: SessionDep,
    settings: SettingsDep,
    registry: ProvidersDep,
    slots: SlotsDep,
    health: HealthDep,
) -> OrjsonResponse:
    return ok(await service.provider_views(session, registry, settings.provider_concurrency, slots, health))


@router.get(
    "/provider-accounts",
    summary="Vendor accounts (never their secrets)",
    response_model=Envelope[list[dict[str, Any]]],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED),
)
async def list_accounts(_: Reader, session: SessionDep) -> OrjsonResponse:
    return ok(await service.account_views(session))


@router.post(
    "/provider-accounts",
    summary="Add a vendor account (admins)",
    description="Several accounts of one provider share its steps, each within its own `concurrency` "
    "and `rate`. The secret is either given (`secret`, sealed with AES-256-GCM before it is stored; "
    "needs WARDROBE_PROVIDER_SECRETS_KEY) or named (`secret_env`, a variable WARDROBE_VENDOR_KEY_* set "
    "on every worker). `endpoint` must be on a host in WARDROBE_PROVIDER_ENDPOINT_HOSTS. Audited.",
    status_code=201,
    response_model=Envelope[dict[str, Any]],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED, ErrorCode.VALIDATION_FAILED, ErrorCode.CONFLICT),
)
async def create_account(
    body: account_admin.AccountCreate,
    actor: AccountAdmin,
    session: SessionDep,
    settings: SettingsDep,
    registry: ProvidersDep,
    directory: AccountsDep,
) -> OrjsonResponse:
    row = await account_admin.create_account(session, registry, settings, directory, body, actor.id)
    return ok(account_admin.account_view(row), status_code=201)


@router.patch(
    "/provider-accounts/{account_id}",
    summary="Change a vendor account (admins): limits, endpoint, secret, on/off",
    description="Only the fields given change. Off: no new call goes to the account; its jobs already "
    "at the vendor finish on it. Audited; every worker uses the change from its next step.",
    response_model=Envelope[dict[str, Any]],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND),
)
async def update_account(
    account_id: Id,
    body: account_admin.AccountPatch,
    actor: AccountAdmin,
    session: SessionDep,
    settings: SettingsDep,
    directory: AccountsDep,
) -> OrjsonResponse:
    row = await account_admin.update_account(session, settings, directory, account_id, body, actor.id)
    return ok(account_admin.account_view(row))


@router.post(
    "/providers/{slug}/switch",
    summary="Take a provider out of service (or back), with a reason",
    description="Off: no new call goes to the provider on any worker from the next step; steps fall "
    "back to their next candidate (or fail with `provider_disabled`); calls in flight finish. Audited.",
    response_model=Envelope[dict[str, Any]],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED, ErrorCode.NOT_FOUND),
)
async def switch_provider(
    slug: str, body: ProviderSwitchIn, actor: Switcher, session: SessionDep, cache: CacheDep, registry: ProvidersDep
) -> OrjsonResponse:
    switch = await switches.switch_provider(
        session, cache, registry, slug, enabled=body.enabled, reason=body.reason, actor_id=actor.id
    )
    return ok({"slug": slug, "enabled": switch.enabled, "reason": switch.reason})
