"""Periodic work of the tasks module (run by ``worker/scheduler.py``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.models import Task, TaskStatus
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota


async def release_expired_holds(session_factory: async_sessionmaker[AsyncSession]) -> int:
    """The sweeper: release holds past their TTL whose task can no longer finish — a task that
    no longer exists or ended without settling. A task still queued or running keeps its hold (the
    reaper gets it moving again, and its worker settles it); each release happens exactly once,
    because a concurrent settlement wins the conditional update and this one then skips."""
    released = 0
    async with unit_of_work(session_factory) as session:
        refs = await quota.expired_hold_refs(session, utcnow())
        live = set()
        task_refs = {ref.removeprefix("task:"): ref for ref in refs if ref.startswith("task:")}
        if task_refs:
            rows = await session.scalars(
                select(Task.public_id).where(
                    Task.public_id.in_(list(task_refs)),
                    Task.status.in_([TaskStatus.QUEUED.value, TaskStatus.RUNNING.value]),
                )
            )
            live = {task_refs[public_id] for public_id in rows}
    for ref in refs:
        # Refund claw-backs are settled by the refund (payments.reconcile), never released here.
        if ref in live or ref.startswith("refund:"):
            continue
        async with unit_of_work(session_factory) as session:
            released += await quota.cancel(session, ref)
    return released
