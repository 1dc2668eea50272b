"""The queries behind the operators' view of the providers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import ProviderAccount, ProviderSwitch, StepStatus, Task, TaskStep


async def switches(session: AsyncSession) -> dict[str, ProviderSwitch]:
    return {s.slug: s for s in await session.scalars(select(ProviderSwitch))}


async def accounts_by_provider(session: AsyncSession) -> dict[str, list[ProviderAccount]]:
    found: dict[str, list[ProviderAccount]] = {}
    for row in await session.scalars(select(ProviderAccount).order_by(ProviderAccount.provider, ProviderAccount.id)):
        found.setdefault(row.provider, []).append(row)
    return found


async def recent_failures(session: AsyncSession, slug: str, limit: int = 10) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Task.public_id, TaskStep.step_id, TaskStep.error, TaskStep.finished_at)
        .join(Task, Task.id == TaskStep.task_id)
        .where(TaskStep.provider == slug, TaskStep.status == StepStatus.FAILED.value)
        .order_by(TaskStep.finished_at.desc())
        .limit(limit)
    )
    return [{"task_id": r.public_id, "step": r.step_id, "error": r.error, "at": r.finished_at} for r in rows]
