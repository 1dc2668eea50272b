"""The overview: rolled-up days from the rollup tables, the others computed live, put together."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.errors import ValidationFailed
from wardrobe.modules.admin.stats import repository as repo
from wardrobe.modules.admin.stats.figures import (
    DayFigures,
    Performance,
    Revenue,
    days_between,
    intervals,
    p95_ms,
    rate,
)

MAX_RANGE_DAYS = 366
EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)


def check_range(start: date, end: date) -> None:
    """``from``..``to`` must be in order, within 366 days, and within the years the service knows."""
    if not EARLIEST <= start <= LATEST:
        raise ValidationFailed("from", f"must be between {EARLIEST} and {LATEST}")
    if not EARLIEST <= end <= LATEST:
        raise ValidationFailed("to", f"must be between {EARLIEST} and {LATEST}")
    if end < start:
        raise ValidationFailed("to", "must not be before from")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ValidationFailed("to", f"the range is at most {MAX_RANGE_DAYS} days")


async def overview(session: AsyncSession, *, start: date, end: date, today: date) -> dict[str, Any]:
    """The figures of the UTC days ``start``..``end`` (both included), as the contract's overview.

    Days rolled up for good come from the rollup tables; the others up to ``today`` (today, days
    not yet settled, days never rolled up) are computed live from the source tables, so the answer
    is always current. Days after ``today`` are zeros."""
    check_range(start, end)
    past_end = min(end, today)
    final = await repo.final_days(session, start, past_end) if start <= past_end else set()
    final.discard(today)
    rolled = intervals(final)
    live = intervals(d for d in days_between(start, past_end) if d not in final) if start <= past_end else []
    figures = await repo.rolled_figures(session, rolled)
    for first, last in live:
        figures.update(await repo.live_figures(session, first, last))
    days = days_between(start, end)
    by_day = [(day, figures.get(day) or DayFigures()) for day in days]
    active = await repo.distinct_active_users(session, rolled, live)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "granularity": "day",
        "totals": _totals([f for _, f in by_day], active),
        "series": [_point(day, f) for day, f in by_day],
        **_breakdowns([f for _, f in by_day]),
    }


def _point(day: date, f: DayFigures) -> dict[str, Any]:
    return {
        "date": day.isoformat(),
        "new_users": f.new_users,
        "active_users": f.active_users,
        "tasks": f.task_count,
        "tasks_failed": f.failed_count,
        "quota_granted": f.quota_granted,
        "quota_spent": f.quota_spent,
        "revenue_fen": sum(r.revenue_fen for r in f.revenue.values()),
        "refunds_fen": sum(r.refunds_fen for r in f.revenue.values()),
    }


def _totals(days: list[DayFigures], active_users: int) -> dict[str, Any]:
    failed = sum(f.failed_count for f in days)
    return {
        "new_users": sum(f.new_users for f in days),
        "active_users": active_users,
        "tasks": sum(f.task_count for f in days),
        "tasks_failed": failed,
        "failure_rate": rate(failed, sum(f.finished_count for f in days)),
        "quota_granted": sum(f.quota_granted for f in days),
        "quota_spent": sum(f.quota_spent for f in days),
        "revenue_fen": sum(r.revenue_fen for f in days for r in f.revenue.values()),
        "refunds_fen": sum(r.refunds_fen for f in days for r in f.revenue.values()),
    }


def _breakdowns(days: list[DayFigures]) -> dict[str, list[dict[str, Any]]]:
    tasks: dict[tuple[str, str], int] = {}
    performance: dict[tuple[str, str], Performance] = {}
    revenue: dict[str, Revenue] = {}
    for f in days:
        for key, count in f.tasks.items():
            tasks[key] = tasks.get(key, 0) + count
        for key, perf in f.performance.items():
            performance.setdefault(key, Performance()).add(perf)
        for channel, r in f.revenue.items():
            total = revenue.setdefault(channel, Revenue())
            total.orders += r.orders
            total.revenue_fen += r.revenue_fen
            total.refunds_fen += r.refunds_fen
    return {
        "tasks_by_feature": [
            {"feature": feature, "status": status, "count": count} for (feature, status), count in sorted(tasks.items())
        ],
        "performance": [
            {
                "feature": feature,
                "provider": provider or None,
                "tasks": p.tasks,
                "failed": p.failed,
                "failure_rate": rate(p.failed, p.tasks),
                "p95_ms": p95_ms(p.durations, p.max_ms),
            }
            for (feature, provider), p in sorted(performance.items())
        ],
        "revenue_by_channel": [
            {"channel": channel, "orders": r.orders, "revenue_fen": r.revenue_fen, "refunds_fen": r.refunds_fen}
            for channel, r in sorted(revenue.items())
        ],
    }
