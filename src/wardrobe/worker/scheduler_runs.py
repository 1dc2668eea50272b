"""The scheduler's memory of its jobs, kept in ``scheduler_runs`` (``models/scheduler.py``).

A run is claimed by one conditional UPDATE (``last_started_at`` older than the job's period), so
whatever races — a leader whose lock just expired and its successor, or an operator's ``--once``
beside the running scheduler — at most one of them starts a job with a period within that period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.models.scheduler import SchedulerRun

ERROR_CHARS = 500


@dataclass(frozen=True)
class RunState:
    job: str
    last_started_at: datetime | None
    last_succeeded_at: datetime | None
    last_error: str | None
    runs: int


async def read_runs(sessions: async_sessionmaker[AsyncSession], jobs: list[str]) -> dict[str, RunState]:
    """Every job's row, made for the jobs that have none yet (a job never run, or a new one)."""
    async with unit_of_work(sessions) as session:
        rows = (await session.scalars(select(SchedulerRun).where(SchedulerRun.job.in_(jobs)))).all()
        found = {row.job: row for row in rows}
        for job in jobs:
            if job not in found:
                found[job] = await _insert(session, job)
        return {
            job: RunState(row.job, row.last_started_at, row.last_succeeded_at, row.last_error, row.runs)
            for job, row in found.items()
        }


async def _insert(session: AsyncSession, job: str) -> SchedulerRun:
    row = SchedulerRun(job=job, runs=0)
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:  # another scheduler made it first
        return (await session.scalars(select(SchedulerRun).where(SchedulerRun.job == job))).one()
    return row


def is_due(state: RunState, now: datetime, period: float) -> bool:
    """Never started, or started a period ago or more: a job missed while no scheduler ran is due
    once, however many periods passed."""
    return state.last_started_at is None or now - state.last_started_at >= timedelta(seconds=period)


async def claim(
    sessions: async_sessionmaker[AsyncSession], job: str, now: datetime, period: float, *, force: bool = False
) -> bool:
    """Mark ``job`` started at ``now`` if it is due (or ``force``); False when another scheduler
    started it within the period."""
    condition = [SchedulerRun.job == job]
    if not force:
        since = now - timedelta(seconds=period)
        condition.append(or_(SchedulerRun.last_started_at.is_(None), SchedulerRun.last_started_at <= since))
    async with unit_of_work(sessions) as session:
        result = await session.execute(
            update(SchedulerRun).where(*condition).values(last_started_at=now, runs=SchedulerRun.runs + 1)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def finish(sessions: async_sessionmaker[AsyncSession], job: str, at: datetime, error: str | None) -> None:
    """Record the end of a run: its success, or its error (the last success stays)."""
    values: dict[str, object] = {"last_finished_at": at, "last_error": error[:ERROR_CHARS] if error else None}
    if error is None:
        values["last_succeeded_at"] = at
    async with unit_of_work(sessions) as session:
        await session.execute(update(SchedulerRun).where(SchedulerRun.job == job).values(**values))
