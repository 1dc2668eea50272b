"""The support console's queries on tasks: any user's, filtered, newest first, with what explains
them (steps, the quota hold and its ledger rows, retries, staff actions).

Every filter walks an index in id order, so a page costs the same on a million tasks as on a
hundred: ``(status, id)``, ``(feature_key, id)``, ``(error_code, id)``, ``(user_id, id)`` and its
status/feature variants, ``(created_at, user_id)`` (shared with the statistics) for a time range.
"Used provider X" is a semi-join on ``task_steps (provider, task_id)``, bounded by the cursor
inside the subquery, so the database can walk the steps of that provider backwards from the
cursor or probe it per task, whichever is cheaper for the other filters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import AuditLog, LedgerEntry, LedgerKind, QuotaHold, Task, TaskStep

TARGET_TYPE = "task"


@dataclass(frozen=True, slots=True)
class TaskFilter:
    user_id: int | None = None
    status: str | None = None
    feature: str | None = None
    provider: str | None = None
    error_code: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


async def page(session: AsyncSession, where: TaskFilter, *, limit: int, before_id: int | None) -> list[Task]:
    """Tasks matching ``where``, newest first, at most ``limit``, below ``before_id``."""
    stmt = select(Task).order_by(Task.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(Task.id < before_id)
    if where.user_id is not None:
        stmt = stmt.where(Task.user_id == where.user_id)
    if where.status is not None:
        stmt = stmt.where(Task.status == where.status)
    if where.feature is not None:
        stmt = stmt.where(Task.feature_key == where.feature)
    if where.error_code is not None:
        stmt = stmt.where(Task.error_code == where.error_code)
    if where.created_from is not None:
        stmt = stmt.where(Task.created_at >= where.created_from)
    if where.created_to is not None:
        stmt = stmt.where(Task.created_at < where.created_to)
    if where.provider is not None:
        used = select(TaskStep.task_id).where(TaskStep.provider == where.provider)
        if before_id is not None:
            used = used.where(TaskStep.task_id < before_id)
        stmt = stmt.where(Task.id.in_(used))
    return list(await session.scalars(stmt))


async def by_public_id(session: AsyncSession, public_id: str) -> Task | None:
    return await session.scalar(select(Task).where(Task.public_id == public_id))


async def providers_of(session: AsyncSession, task_ids: Sequence[int]) -> dict[int, list[str]]:
    """The providers each task's steps ran on, in the order first used."""
    if not task_ids:
        return {}
    rows = await session.execute(
        select(TaskStep.task_id, TaskStep.provider)
        .where(TaskStep.task_id.in_(list(task_ids)), TaskStep.provider.is_not(None))
        .order_by(TaskStep.task_id, TaskStep.id)
    )
    found: dict[int, list[str]] = {}
    for task_id, provider in rows:
        used = found.setdefault(task_id, [])
        if provider is not None and provider not in used:
            used.append(provider)
    return found


async def public_ids(session: AsyncSession, task_ids: set[int]) -> dict[int, str]:
    if not task_ids:
        return {}
    rows = await session.execute(select(Task.id, Task.public_id).where(Task.id.in_(sorted(task_ids))))
    return {int(task_id): str(public_id) for task_id, public_id in rows}


async def retried_by(session: AsyncSession, task_id: int) -> str | None:
    return await session.scalar(select(Task.public_id).where(Task.retry_of == task_id))


async def steps(session: AsyncSession, task_id: int) -> list[TaskStep]:
    return list(await session.scalars(select(TaskStep).where(TaskStep.task_id == task_id).order_by(TaskStep.id)))


async def hold(session: AsyncSession, ref: str) -> QuotaHold | None:
    return await session.scalar(select(QuotaHold).where(QuotaHold.ref == ref))


async def ledger(session: AsyncSession, ref: str) -> list[LedgerEntry]:
    """The ledger rows of one reference. Listing every kind lets the unique ``(kind, ref)`` index
    find them (a lookup per kind) instead of a scan of the user's rows."""
    kinds = [kind.value for kind in LedgerKind]
    stmt = select(LedgerEntry).where(LedgerEntry.kind.in_(kinds), LedgerEntry.ref == ref).order_by(LedgerEntry.id)
    return list(await session.scalars(stmt))


async def actions(session: AsyncSession, public_id: str) -> list[AuditLog]:
    stmt = (
        select(AuditLog)
        .where(AuditLog.target_type == TARGET_TYPE, AuditLog.target_id == public_id)
        .order_by(AuditLog.created_at, AuditLog.id)
    )
    return list(await session.scalars(stmt))
