"""Admin view of the providers: shape, concurrency in use, health, accounts and switches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.deps import SessionDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.infra import Infra
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.schemas import Id, InputModel
from wardrobe.models import StepStatus, Task, TaskStep
from wardrobe.modules.auth.deps import InfraDep, Principal, require
from wardrobe.modules.auth.permissions import Permission
from wardrobe.modules.providers import account_admin, switches
from wardrobe.modules.providers.accounts import AccountDirectory
from wardrobe.modules.providers.base import AsyncProvider
from wardrobe.modules.users import repository as users_repo

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Operator = Annotated[Principal, Depends(require(Permission.CATALOG_WRITE))]
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


async def _recent_failures(session: AsyncSession, slug: str, limit: int = 10) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Task.public_id, TaskStep.step_id, TaskStep.error, TaskStep.finished_at)
        .join(Task, Task.id == TaskStep.task_id)
        .where(TaskStep.provider == slug, TaskStep.status == StepStatus.FAILED.value)
        .order_by(TaskStep.finished_at.desc())
        .limit(limit)
    )
    return [{"task_id": r.public_id, "step": r.step_id, "error": r.error, "at": r.finished_at} for r in rows]


@router.get(
    "/providers",
    summary="Providers with their concurrency use and health",
    response_model=Envelope[list[ProviderOut]],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED),
)
async def list_providers(_: Operator, infra: InfraDep, session: SessionDep) -> OrjsonResponse:
    runtime = infra.runtime
    health = await runtime.provider_health()
    limits = runtime.engine.config.provider_concurrency
    switched = await switches.switches(session)
    accounts = await account_admin.accounts_by_provider(session)
    items = []
    for slug in infra.providers.slugs():
        provider = infra.providers.get(slug)
        switch = switched.get(slug)
        off = switch is not None and not switch.enabled
        items.append(
            {
                "slug": slug,
                "kind": "async" if isinstance(provider, AsyncProvider) else "sync",
                "enabled": not off,
                "disabled_reason": switch.reason if off and switch is not None else None,
                "concurrency_limit": limits.get(slug),
                "in_use": await runtime.engine.slots.in_use(slug),
                "health": health.get(slug, {"state": "up", "recent_calls": 0}),
                "recent_failures": await _recent_failures(session, slug),
                "accounts": await _accounts_now(runtime, slug, accounts.get(slug, []), health),
            }
        )
    return ok(items)


async def _accounts_now(
    runtime: Any, slug: str, rows: list[Any], health: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each account with its slots in use right now and its own health."""
    if not rows:
        return []
    in_use = await runtime.engine.slots.in_use_by_account(slug)
    return [
        {
            **account_admin.account_view(row),
            "in_use": in_use.get(row.name, 0),
            "health": health.get(f"{slug}#{row.name}", {"state": "up", "recent_calls": 0}),
        }
        for row in rows
    ]


@router.get(
    "/provider-accounts",
    summary="Vendor accounts (never their secrets)",
    response_model=Envelope[list[dict[str, Any]]],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED),
)
async def list_accounts(_: Operator, session: SessionDep) -> OrjsonResponse:
    rows = await account_admin.accounts_by_provider(session)
    return ok([account_admin.account_view(row) for group in rows.values() for row in group])


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
    body: account_admin.AccountCreate, actor: AccountAdmin, infra: InfraDep, session: SessionDep
) -> OrjsonResponse:
    row = await account_admin.create_account(
        session, infra.providers, infra.settings, _directory(infra), body, actor.id
    )
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
    account_id: Id, body: account_admin.AccountPatch, actor: AccountAdmin, infra: InfraDep, session: SessionDep
) -> OrjsonResponse:
    row = await account_admin.update_account(session, infra.settings, _directory(infra), account_id, body, actor.id)
    return ok(account_admin.account_view(row))


def _directory(infra: Infra) -> AccountDirectory:
    directory = infra.runtime.engine.accounts
    if directory is None:  # pragma: no cover - the app always sets it
        raise AppError(ErrorCode.DEPENDENCY_UNAVAILABLE)
    return directory


@router.post(
    "/providers/{slug}/switch",
    summary="Take a provider out of service (or back), with a reason",
    description="Off: no new call goes to the provider on any worker from the next step; steps fall "
    "back to their next candidate (or fail with `provider_disabled`); calls in flight finish. Audited.",
    response_model=Envelope[dict[str, Any]],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED, ErrorCode.NOT_FOUND),
)
async def switch_provider(
    slug: str, body: ProviderSwitchIn, actor: Operator, infra: InfraDep, session: SessionDep
) -> OrjsonResponse:
    if infra.providers.get(slug) is None:
        raise AppError(ErrorCode.NOT_FOUND)
    switch = await switches.set_switch(
        session, infra.cache, slug, enabled=body.enabled, reason=body.reason, actor_id=actor.id
    )
    users_repo.add_audit(
        session,
        actor_id=actor.id,
        action="provider.enable" if body.enabled else "provider.disable",
        target_type="provider",
        target_id=slug,
        reason=body.reason,
    )
    return ok({"slug": slug, "enabled": switch.enabled, "reason": switch.reason})
