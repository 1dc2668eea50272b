"""The rollup job (run by ``worker/scheduler.py``, and in the API process in embedded mode): closed
days that are not final yet are computed from the source tables and stored, a run of at most
``CHUNK_DAYS`` days per transaction."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.models.base import utcnow
from wardrobe.modules.admin.stats import repository as repo
from wardrobe.modules.admin.stats.figures import DayFigures, days_between, intervals

# A closed day is final (never computed again, read from the rollup only) once it was rolled up
# SETTLE after it ended with no task of it still queued or running. Everything else is written at
# the time it counts on, except a payment: its paid_at is the platform's time, and its
# notification (or the reconciliation, WARDROBE_RECONCILE_AFTER_MINUTES later) arrives within
# minutes. A task stuck queued or running keeps its day open, but not beyond MAX_SETTLE.
SETTLE = timedelta(hours=1)
MAX_SETTLE = timedelta(days=7)
CHUNK_DAYS = 7
# The newest days first; a first run over years of history catches up over several runs (the
# overview computes the days not yet rolled up live meanwhile).
MAX_DAYS_PER_RUN = 92


def is_final(day: date, figures: DayFigures, now: datetime) -> bool:
    closed_for = now - repo.day_start(day + timedelta(days=1))
    return closed_for >= MAX_SETTLE or (closed_for >= SETTLE and figures.open_tasks == 0)


async def days_to_roll_up(session: AsyncSession, today: date, limit: int) -> list[date]:
    """Closed days since the first account that are not final, the newest ``limit`` of them."""
    first = await repo.first_day(session)
    yesterday = today - timedelta(days=1)
    if first is None or first > yesterday:
        return []
    done = await repo.final_days(session, first, yesterday)
    return [day for day in days_between(first, yesterday) if day not in done][-limit:]


async def roll_up_stats(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    max_days: int = MAX_DAYS_PER_RUN,
) -> int:
    """Compute and store the closed days that are not final; returns how many days were stored.
    Idempotent: a day's rows are replaced whole, in one transaction, from the source tables."""
    now = now or utcnow()
    async with unit_of_work(session_factory) as session:
        todo = await days_to_roll_up(session, now.date(), max_days)
    stored = 0
    for first, last in reversed(intervals(todo)):
        while last >= first:
            start = max(first, last - timedelta(days=CHUNK_DAYS - 1))
            async with unit_of_work(session_factory) as session:
                figures = await repo.live_figures(session, start, last)
                finals = {day: is_final(day, f, now) for day, f in figures.items()}
                await repo.replace_days(session, start, last, figures, finals, now)
            stored += len(figures)
            last = start - timedelta(days=1)
    return stored
