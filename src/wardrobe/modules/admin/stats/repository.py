"""The queries of the statistics.

``live_figures`` computes days from the source tables, each query a range on an indexed time
column grouped by day (what the rollup job stores, and what the overview computes for the days not
rolled up); the rest reads and replaces the rollup tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    and_,
    case,
    delete,
    false,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from wardrobe.models import (
    LedgerEntry,
    LedgerKind,
    Order,
    Refund,
    RefundStatus,
    StatsDaily,
    StatsDailyActiveUser,
    StatsDailyRevenue,
    StatsDailyTasks,
    Task,
    TaskStatus,
    TaskStep,
    User,
    stats_daily_performance,
)
from wardrobe.models.stats import DURATION_COLUMNS
from wardrobe.modules.admin.stats.figures import (
    BOUNDS_MS,
    FINISHED,
    Breakdown,
    DayFigures,
    Performance,
    Point,
    Revenue,
    days_between,
)

# Positive ledger amounts of these kinds are quota granted; confirmed holds are quota spent.
GRANTED_KINDS = (
    LedgerKind.GRANT.value,
    LedgerKind.PURCHASE.value,
    LedgerKind.ADMIN_ADJUSTMENT.value,
    LedgerKind.REFERRAL_REWARD.value,
    LedgerKind.REFERRAL_REBATE.value,
)
SPENT_KIND = LedgerKind.CONFIRM.value
NO_DURATION = -1  # the bucket of a task without both a start and an end


class duration_ms(FunctionElement[int]):
    """Milliseconds from the first timestamp to the second, rounded to whole ms, on each backend
    (timestamps are naive UTC in every one of them)."""

    type = BigInteger()
    name = "duration_ms"
    inherit_cache = True


@compiles(duration_ms)
def _duration_sqlite(element: duration_ms, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(ROUND((julianday({end}) - julianday({start})) * 86400000.0) AS INTEGER)"


@compiles(duration_ms, "mysql")
def _duration_mysql(element: duration_ms, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(ROUND(TIMESTAMPDIFF(MICROSECOND, {start}, {end}) / 1000) AS SIGNED)"


@compiles(duration_ms, "postgresql")
def _duration_postgresql(element: duration_ms, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(ROUND(EXTRACT(EPOCH FROM ({end} - {start})) * 1000) AS BIGINT)"


class duration_bucket(FunctionElement[int]):
    """The histogram bucket of a duration in ms (``figures.BOUNDS_MS``), -1 for NULL."""

    type = Integer()
    name = "duration_bucket"
    inherit_cache = True


def _bucket_tree(ms: str, low: int, high: int) -> str:
    # A binary search over the bounds: ~6 comparisons per row instead of up to 49.
    if low == high:
        return str(low)
    middle = (low + high) // 2
    return (
        f"CASE WHEN {ms} <= {BOUNDS_MS[middle]} THEN {_bucket_tree(ms, low, middle)} "
        f"ELSE {_bucket_tree(ms, middle + 1, high)} END"
    )


@compiles(duration_bucket)
def _bucket_portable(element: duration_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    (ms,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"CASE WHEN {ms} IS NULL THEN {NO_DURATION} ELSE {_bucket_tree(ms, 0, len(BOUNDS_MS))} END"


@compiles(duration_bucket, "mysql")
def _bucket_mysql(element: duration_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    # ceil(3 log2(ms / 50)) is the bucket exactly (figures.BOUNDS_MS says why); LOG2 of a power
    # of two is exact in MariaDB, and no other bound is within 0.003 ms of a whole number.
    (ms,) = (compiler.process(c, **kw) for c in element.clauses)
    last = len(BOUNDS_MS)
    return (
        f"IF({ms} IS NULL, {NO_DURATION}, IF({ms} <= {BOUNDS_MS[0]}, 0, "
        f"LEAST({last}, CAST(CEIL(3 * LOG2({ms} / {BOUNDS_MS[0]})) AS SIGNED))))"
    )


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _day_of(column: Any) -> ColumnElement[Any]:
    """The UTC day of a timestamp column (stored as naive UTC): DATE(x) on every backend."""
    return func.date(column)


def _as_date(value: Any) -> date:
    # SQLite's date() gives text, MariaDB's and PostgreSQL's a date.
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _int(value: Any) -> int:
    return int(value or 0)  # SUM is DECIMAL on MariaDB, and NULL over no rows


def _in(column: Any, first: date, last: date) -> ColumnElement[bool]:
    """A time column within the days ``first``..``last``: a half-open range an index can seek."""
    return and_(column >= day_start(first), column < day_start(last + timedelta(days=1)))


def _days_in(column: Any, runs: Sequence[tuple[date, date]]) -> ColumnElement[bool]:
    """A day column within any of the runs of days."""
    if not runs:
        return false()
    return or_(*(column.between(first, last) for first, last in runs))


# -- Live: the source tables --------------------------------------------------------------------


async def live_figures(session: AsyncSession, first: date, last: date) -> dict[date, DayFigures]:
    """Every figure of the days ``first``..``last`` (UTC), from the source tables."""
    out = {date.fromordinal(n): DayFigures() for n in range(first.toordinal(), last.toordinal() + 1)}
    await _users(session, first, last, out)
    await _tasks(session, first, last, out)
    await _performance(session, first, last, out)
    await _quota(session, first, last, out)
    await _revenue(session, first, last, out)
    return out


async def _users(session: AsyncSession, first: date, last: date, out: dict[date, DayFigures]) -> None:
    day = _day_of(User.created_at)
    rows = await session.execute(select(day, func.count()).where(_in(User.created_at, first, last)).group_by(day))
    for value, count in rows:
        out[_as_date(value)].new_users = count
    # Covered by ix_tasks_created_at_user_id: the rows themselves are not read.
    day = _day_of(Task.created_at)
    active = select(day, func.count(func.distinct(Task.user_id))).where(_in(Task.created_at, first, last))
    for value, count in await session.execute(active.group_by(day)):
        out[_as_date(value)].active_users = count


async def _tasks(session: AsyncSession, first: date, last: date, out: dict[date, DayFigures]) -> None:
    day = _day_of(Task.created_at)
    query = (
        select(day, Task.feature_key, Task.status, func.count())
        .where(_in(Task.created_at, first, last))
        .group_by(day, Task.feature_key, Task.status)
    )
    for value, feature, status, count in await session.execute(query):
        out[_as_date(value)].tasks[(feature, status)] = count


async def _performance(session: AsyncSession, first: date, last: date, out: dict[date, DayFigures]) -> None:
    """Finished tasks by (feature, provider, status, duration bucket). A task counts once under
    each provider one of its steps ran on (two steps on one provider: still once, hence the
    distinct count), or under "" when none did; its duration is its own (started to finished)."""
    joined = (
        select(
            Task.id.label("id"),
            _day_of(Task.created_at).label("day"),
            Task.feature_key.label("feature"),
            TaskStep.provider.label("provider"),
            Task.status.label("status"),
            duration_ms(Task.started_at, Task.finished_at).label("ms"),
        )
        .select_from(Task)
        .outerjoin(TaskStep, and_(TaskStep.task_id == Task.id, TaskStep.provider.is_not(None)))
        .where(_in(Task.created_at, first, last), Task.status.in_(FINISHED))
        .subquery()
    )
    c = joined.c
    bucket = duration_bucket(c.ms)
    query = select(
        c.day, c.feature, c.provider, c.status, bucket, func.count(func.distinct(c.id)), func.max(c.ms)
    ).group_by(c.day, c.feature, c.provider, c.status, bucket)
    for value, feature, provider, status, index, count, longest in await session.execute(query):
        perf = out[_as_date(value)].perf(feature, provider or "")
        perf.tasks += count
        if status == TaskStatus.FAILED.value:
            perf.failed += count
        if index != NO_DURATION:
            perf.durations[index] += count
            longest = int(longest)
            perf.max_ms = longest if perf.max_ms is None else max(perf.max_ms, longest)


async def _quota(session: AsyncSession, first: date, last: date, out: dict[date, DayFigures]) -> None:
    day = _day_of(LedgerEntry.created_at)
    granted = case(
        (and_(LedgerEntry.kind.in_(GRANTED_KINDS), LedgerEntry.amount > 0), LedgerEntry.amount),
        else_=0,
    )
    spent = case((LedgerEntry.kind == SPENT_KIND, -LedgerEntry.amount), else_=0)
    query = (
        select(day, func.sum(granted), func.sum(spent))
        .where(LedgerEntry.kind.in_((*GRANTED_KINDS, SPENT_KIND)), _in(LedgerEntry.created_at, first, last))
        .group_by(day)
    )
    for value, granted_sum, spent_sum in await session.execute(query):
        figures = out[_as_date(value)]
        figures.quota_granted, figures.quota_spent = _int(granted_sum), _int(spent_sum)


async def _revenue(session: AsyncSession, first: date, last: date, out: dict[date, DayFigures]) -> None:
    day = _day_of(Order.paid_at)
    paid = (
        select(day, Order.channel, func.count(), func.sum(Order.paid_fen))
        .where(_in(Order.paid_at, first, last))
        .group_by(day, Order.channel)
    )
    for value, channel, count, total in await session.execute(paid):
        revenue = out[_as_date(value)].channel(channel)
        revenue.orders, revenue.revenue_fen = count, _int(total)
    day = _day_of(Refund.settled_at)
    refunded = (
        select(day, Order.channel, func.sum(Refund.amount_fen))
        .join(Order, Order.id == Refund.order_id)
        .where(Refund.status == RefundStatus.SUCCEEDED.value, _in(Refund.settled_at, first, last))
        .group_by(day, Order.channel)
    )
    for value, channel, total in await session.execute(refunded):
        out[_as_date(value)].channel(channel).refunds_fen = _int(total)


async def distinct_rolled_users(session: AsyncSession, rolled: Sequence[tuple[date, date]]) -> int:
    """Distinct users active on any of the rolled-up days: one pass over their (day, user) pairs."""
    if not rolled:
        return 0
    pairs = StatsDailyActiveUser
    query = select(func.count(func.distinct(pairs.user_id))).where(_days_in(pairs.day, rolled))
    return _int(await session.scalar(query))


async def distinct_live_users_not_rolled(
    session: AsyncSession, live: Sequence[tuple[date, date]], rolled: Sequence[tuple[date, date]]
) -> int:
    """Distinct users who created a task on the live days and were active on none of the rolled-up
    days: the live days' index entries, each user looked up once in the pairs by user."""
    if not live:
        return 0
    pairs = StatsDailyActiveUser
    query = select(func.count(func.distinct(Task.user_id))).where(or_(*(_in(Task.created_at, a, b) for a, b in live)))
    if rolled:
        seen = select(pairs.user_id).where(pairs.user_id == Task.user_id, _days_in(pairs.day, rolled))
        query = query.where(~seen.exists())
    return _int(await session.scalar(query))


async def first_day(session: AsyncSession) -> date | None:
    """The day the first account was made: nothing the statistics count is older."""
    first = await session.scalar(select(func.min(User.created_at)))
    return None if first is None else first.date()


# -- The rollup tables --------------------------------------------------------------------------


async def final_days(session: AsyncSession, first: date, last: date) -> dict[date, datetime]:
    """The final days of ``first``..``last``, with when each was computed."""
    rows = await session.execute(
        select(StatsDaily.day, StatsDaily.computed_at).where(
            StatsDaily.day.between(first, last), StatsDaily.final.is_(True)
        )
    )
    return {_as_date(day): computed for day, computed in rows}


async def rolled_points(session: AsyncSession, runs: Sequence[tuple[date, date]]) -> dict[date, Point]:
    """The series of the rolled-up days in ``runs``, summed per day by the database."""
    points = {day: Point() for first, last in runs for day in days_between(first, last)}
    if not runs:
        return points
    daily = select(
        StatsDaily.day, StatsDaily.new_users, StatsDaily.active_users, StatsDaily.quota_granted, StatsDaily.quota_spent
    ).where(_days_in(StatsDaily.day, runs))
    for day, new_users, active, granted, spent in await session.execute(daily):
        point = points[_as_date(day)]
        point.new_users, point.active_users, point.quota_granted, point.quota_spent = new_users, active, granted, spent
    t = StatsDailyTasks
    tasks = (
        select(
            t.day,
            func.sum(t.tasks),
            func.sum(case((t.status == TaskStatus.FAILED.value, t.tasks), else_=0)),
            func.sum(case((t.status.in_(FINISHED), t.tasks), else_=0)),
        )
        .where(_days_in(t.day, runs))
        .group_by(t.day)
    )
    for day, count, failed, finished in await session.execute(tasks):
        point = points[_as_date(day)]
        point.tasks, point.tasks_failed, point.tasks_finished = _int(count), _int(failed), _int(finished)
    r = StatsDailyRevenue
    revenue = (
        select(r.day, func.sum(r.revenue_fen), func.sum(r.refunds_fen)).where(_days_in(r.day, runs)).group_by(r.day)
    )
    for day, paid, refunded in await session.execute(revenue):
        point = points[_as_date(day)]
        point.revenue_fen, point.refunds_fen = _int(paid), _int(refunded)
    return points


async def rolled_breakdown(session: AsyncSession, runs: Sequence[tuple[date, date]]) -> Breakdown:
    """Tasks, performance (histograms included) and revenue of the rolled-up days in ``runs``,
    summed over the days by the database."""
    out = Breakdown()
    if not runs:
        return out
    t = StatsDailyTasks
    tasks = select(t.feature, t.status, func.sum(t.tasks)).where(_days_in(t.day, runs)).group_by(t.feature, t.status)
    for feature, status, count in await session.execute(tasks):
        out.tasks[(feature, status)] = _int(count)
    p = stats_daily_performance.c
    perf = (
        select(
            p.feature,
            p.provider,
            func.sum(p.tasks),
            func.sum(p.failed),
            func.max(p.max_ms),
            *(func.sum(p[name]) for name in DURATION_COLUMNS),
        )
        .where(_days_in(p.day, runs))
        .group_by(p.feature, p.provider)
    )
    for feature, provider, count, failed, longest, *durations in await session.execute(perf):
        out.performance[(feature, provider)] = Performance(
            _int(count), _int(failed), [_int(n) for n in durations], None if longest is None else int(longest)
        )
    r = StatsDailyRevenue
    revenue = (
        select(r.channel, func.sum(r.orders), func.sum(r.revenue_fen), func.sum(r.refunds_fen))
        .where(_days_in(r.day, runs))
        .group_by(r.channel)
    )
    for channel, orders, paid, refunded in await session.execute(revenue):
        out.revenue[channel] = Revenue(_int(orders), _int(paid), _int(refunded))
    return out


async def replace_days(
    session: AsyncSession,
    first: date,
    last: date,
    figures: dict[date, DayFigures],
    finals: dict[date, bool],
    now: datetime,
) -> None:
    """Replace the rollup rows of ``first``..``last`` with ``figures`` (every day of the run, in
    the caller's transaction), and the day's (day, user) pairs of active users."""
    for table in (StatsDaily, StatsDailyTasks, StatsDailyRevenue, StatsDailyActiveUser):
        await session.execute(delete(table).where(table.day.between(first, last)))
    await session.execute(delete(stats_daily_performance).where(stats_daily_performance.c.day.between(first, last)))
    # The pairs straight from the index into the table: no row passes through Python.
    pairs = select(_day_of(Task.created_at), Task.user_id).where(_in(Task.created_at, first, last)).distinct()
    await session.execute(insert(StatsDailyActiveUser).from_select(["day", "user_id"], pairs))
    await session.execute(insert(StatsDaily), [_daily_row(day, f, finals[day], now) for day, f in figures.items()])
    rows: list[dict[str, Any]] = [
        {"day": day, "feature": feature, "status": status, "tasks": count}
        for day, f in figures.items()
        for (feature, status), count in f.tasks.items()
    ]
    if rows:
        await session.execute(insert(StatsDailyTasks), rows)
    rows = [
        {
            "day": day,
            "feature": feature,
            "provider": provider,
            "tasks": p.tasks,
            "failed": p.failed,
            "max_ms": p.max_ms,
            **dict(zip(DURATION_COLUMNS, p.durations, strict=True)),
        }
        for day, f in figures.items()
        for (feature, provider), p in f.performance.items()
    ]
    if rows:
        await session.execute(insert(stats_daily_performance), rows)
    rows = [
        {"day": day, "channel": channel, "orders": r.orders, "revenue_fen": r.revenue_fen, "refunds_fen": r.refunds_fen}
        for day, f in figures.items()
        for channel, r in f.revenue.items()
    ]
    if rows:
        await session.execute(insert(StatsDailyRevenue), rows)


def _daily_row(day: date, figures: DayFigures, final: bool, now: datetime) -> dict[str, Any]:
    return {
        "day": day,
        "new_users": figures.new_users,
        "active_users": figures.active_users,
        "quota_granted": figures.quota_granted,
        "quota_spent": figures.quota_spent,
        "final": final,
        "computed_at": now,
    }
