"""The overview: rolled-up days from the rollup tables, the others computed live, put together."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.cache import Cache
from wardrobe.core.errors import ValidationFailed
from wardrobe.modules.admin.stats import repository as repo
from wardrobe.modules.admin.stats.figures import Breakdown, Point, days_between, intervals, p95_ms, rate

MAX_RANGE_DAYS = 366
# The cache namespace of the rolled-up part of a range's distinct active users.
ACTIVE_USERS_CACHE = "stats_active_users"
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


async def overview(session: AsyncSession, cache: Cache, *, start: date, end: date, today: date) -> dict[str, Any]:
    """The figures of the UTC days ``start``..``end`` (both included), as the contract's overview.

    Days rolled up for good come from the rollup tables; the others up to ``today`` (today, days
    not yet settled, days never rolled up) are computed live from the source tables, so the answer
    is always current. Days after ``today`` are zeros."""
    check_range(start, end)
    past_end = min(end, today)
    past = days_between(start, past_end) if start <= past_end else []
    final = await repo.final_days(session, start, past_end) if past else {}
    final.pop(today, None)
    rolled = intervals(final)
    live = intervals(day for day in past if day not in final)
    points = await repo.rolled_points(session, rolled)
    breakdown = await repo.rolled_breakdown(session, rolled)
    for first, last in live:
        for day, figures in (await repo.live_figures(session, first, last)).items():
            points[day] = figures.point()
            breakdown.add(figures)
    series = [(day, points.get(day) or Point()) for day in days_between(start, end)]
    active = await _distinct_active_users(session, cache, rolled, live, max(final.values(), default=None))
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "granularity": "day",
        "totals": _totals([p for _, p in series], active),
        "series": [_point(day, p) for day, p in series],
        **_breakdown(breakdown),
    }


async def _distinct_active_users(
    session: AsyncSession,
    cache: Cache,
    rolled: list[tuple[date, date]],
    live: list[tuple[date, date]],
    computed: datetime | None,
) -> int:
    """Users active on the final days, plus the live days' users who were not. The first count
    is the costly one (a pass over the range's (day, user) pairs) and cannot change while those
    days stay as they were computed, so it is cached under the days and their latest
    computation: recomputing any of them makes a new key."""
    if not rolled:
        return await repo.distinct_live_users_not_rolled(session, live, rolled)
    key = f"{rolled}@{computed}"
    count = await cache.get(ACTIVE_USERS_CACHE, key, lambda: repo.distinct_rolled_users(session, rolled))
    return (count or 0) + await repo.distinct_live_users_not_rolled(session, live, rolled)


def _point(day: date, p: Point) -> dict[str, Any]:
    return {
        "date": day.isoformat(),
        "new_users": p.new_users,
        "active_users": p.active_users,
        "tasks": p.tasks,
        "tasks_failed": p.tasks_failed,
        "quota_granted": p.quota_granted,
        "quota_spent": p.quota_spent,
        "revenue_fen": p.revenue_fen,
        "refunds_fen": p.refunds_fen,
    }


def _totals(points: list[Point], active_users: int) -> dict[str, Any]:
    failed = sum(p.tasks_failed for p in points)
    return {
        "new_users": sum(p.new_users for p in points),
        "active_users": active_users,
        "tasks": sum(p.tasks for p in points),
        "tasks_failed": failed,
        "failure_rate": rate(failed, sum(p.tasks_finished for p in points)),
        "quota_granted": sum(p.quota_granted for p in points),
        "quota_spent": sum(p.quota_spent for p in points),
        "revenue_fen": sum(p.revenue_fen for p in points),
        "refunds_fen": sum(p.refunds_fen for p in points),
    }


def _breakdown(b: Breakdown) -> dict[str, list[dict[str, Any]]]:
    return {
        "tasks_by_feature": [
            {"feature": feature, "status": status, "count": count}
            for (feature, status), count in sorted(b.tasks.items())
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
            for (feature, provider), p in sorted(b.performance.items())
        ],
        "revenue_by_channel": [
            {"channel": channel, "orders": r.orders, "revenue_fen": r.revenue_fen, "refunds_fen": r.refunds_fen}
            for channel, r in sorted(b.revenue.items())
        ],
    }
