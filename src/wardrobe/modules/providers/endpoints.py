"""Admin view of the providers: shape, concurrency in use, and health (D5, D6)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.models import StepStatus, Task, TaskStep
from wardrobe.modules.auth.deps import InfraDep, Principal, SessionDep, require
from wardrobe.modules.auth.permissions import Permission
from wardrobe.modules.providers import switches
from wardrobe.modules.providers.base import AsyncProvider
from wardrobe.modules.users import repository as users_repo

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Operator = Annotated[Principal, Depends(require(Permission.CATALOG_WRITE))]


class ProviderOut(BaseModel):
    slug: str
    kind: str
    enabled: bool
    disabled_reason: str | None
    concurrency_limit: int | None
    in_use: int
    health: dict[str, Any]
    recent_failures: list[dict[str, Any]]


class ProviderSwitchIn(BaseModel):
    """Take a provider out of service (or back), and why (kept in the audit log)."""

    model_config = ConfigDict(extra="forbid")

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
            }
        )
    return ok(items)


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
