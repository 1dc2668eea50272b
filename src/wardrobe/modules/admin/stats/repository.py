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
    and_,
    case,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    union,
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
    StatsDailyPerformance,
    StatsDailyRevenue,
    StatsDailyTasks,
    Task,
    TaskStatus,
    TaskStep,
    User,
)
from wardrobe.modules.admin.stats.figures import BOUNDS_MS, DayFigures, Performance, Revenue

# Positive ledger amounts of these kinds are quota granted; confirmed holds are quota spent.
GRANTED_KINDS = (
    LedgerKind.GRANT.value,
    LedgerKind.PURCHASE.value,
    LedgerKind.ADMIN_ADJUSTMENT.value,
    LedgerKind.REFERRAL_REWARD.value,
    LedgerKind.REFERRAL_REBATE.value,
)
SPENT_KIND = LedgerKind.CONFIRM.value
FINISHED = (TaskStatus.SUCCEEDED.value, TaskStatus.FAILED.value)
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
    each provider one of its steps ran on, or under "" when none did; its duration is its own
    (started to finished)."""
    per_provider = (
        select(
            Task.id,
            _day_of(Task.created_at).label("day"),
            Task.feature_key.label("feature"),
            TaskStep.provider.label("provider"),
            Task.status.label("status"),
            duration_ms(Task.started_at, Task.finished_at).label("ms"),
        )
        .select_from(Task)
        .outerjoin(TaskStep, and_(TaskStep.task_id == Task.id, TaskStep.provider.is_not(None)))
        .where(_in(Task.created_at, first, last), Task.status.in_(FINISHED))
        .distinct()
        .subquery()
    )
    ms = per_provider.c.ms
    bucket = case(
        (ms.is_(None), NO_DURATION),
        *((ms <= bound, index) for index, bound in enumerate(BOUNDS_MS)),
        else_=len(BOUNDS_MS),
    )
    c = per_provider.c
    query = select(c.day, c.feature, c.provider, c.status, bucket, func.count(), func.max(ms)).group_by(
        c.day, c.feature, c.provider, c.status, bucket
    )
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


async def distinct_active_users(
    session: AsyncSession, rolled: Sequence[tuple[date, date]], live: Sequence[tuple[date, date]]
) -> int:
    """Distinct users who created a task on any of the days: the rolled-up days' (day, user) pairs
    and the live days' tasks (the index alone), deduplicated together by the database."""
    parts = []
    if rolled:
        parts.append(
            select(StatsDailyActiveUser.user_id.label("user_id")).where(_days_in(StatsDailyActiveUser.day, rolled))
        )
    parts += [select(Task.user_id.label("user_id")).where(_in(Task.created_at, a, b)) for a, b in live]
    if not parts:
        return 0
    if len(parts) == 1:
        only = parts[0].subquery()
        return _int(await session.scalar(select(func.count(func.distinct(only.c.user_id)))))
    return _int(await session.scalar(select(func.count()).select_from(union(*parts).subquery())))


async def first_day(session: AsyncSession) -> date | None:
    """The day the first account was made: nothing the statistics count is older."""
    first = await session.scalar(select(func.min(User.created_at)))
    return None if first is None else first.date()


# -- The rollup tables --------------------------------------------------------------------------


async def final_days(session: AsyncSession, first: date, last: date) -> set[date]:
    rows = await session.scalars(
        select(StatsDaily.day).where(StatsDaily.day.between(first, last), StatsDaily.final.is_(True))
    )
    return {_as_date(day) for day in rows}


async def rolled_figures(session: AsyncSession, runs: Sequence[tuple[date, date]]) -> dict[date, DayFigures]:
    """The stored figures of the days in ``runs`` (each day present, zeros where nothing happened)."""
    out = {date.fromordinal(n): DayFigures() for a, b in runs for n in range(a.toordinal(), b.toordinal() + 1)}
    if not runs:
        return out
    daily = select(
        StatsDaily.day, StatsDaily.new_users, StatsDaily.active_users, StatsDaily.quota_granted, StatsDaily.quota_spent
    )
    for day, new_users, active, granted, spent in await session.execute(daily.where(_days_in(StatsDaily.day, runs))):
        figures = out[_as_date(day)]
        figures.new_users, figures.active_users, figures.quota_granted, figures.quota_spent = (
            new_users,
            active,
            granted,
            spent,
        )
    tasks = select(StatsDailyTasks.day, StatsDailyTasks.feature, StatsDailyTasks.status, StatsDailyTasks.tasks)
    for day, feature, status, count in await session.execute(tasks.where(_days_in(StatsDailyTasks.day, runs))):
        out[_as_date(day)].tasks[(feature, status)] = count
    perf = select(
        StatsDailyPerformance.day,
        StatsDailyPerformance.feature,
        StatsDailyPerformance.provider,
        StatsDailyPerformance.tasks,
        StatsDailyPerformance.failed,
        StatsDailyPerformance.durations,
        StatsDailyPerformance.max_ms,
    ).where(_days_in(StatsDailyPerformance.day, runs))
    for day, feature, provider, count, failed, durations, max_ms in await session.execute(perf):
        out[_as_date(day)].performance[(feature, provider)] = Performance(count, failed, list(durations), max_ms)
    revenue = select(
        StatsDailyRevenue.day,
        StatsDailyRevenue.channel,
        StatsDailyRevenue.orders,
        StatsDailyRevenue.revenue_fen,
        StatsDailyRevenue.refunds_fen,
    ).where(_days_in(StatsDailyRevenue.day, runs))
    for day, channel, orders, paid, refunded in await session.execute(revenue):
        out[_as_date(day)].revenue[channel] = Revenue(orders, paid, refunded)
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
    for table in (StatsDaily, StatsDailyTasks, StatsDailyPerformance, StatsDailyRevenue, StatsDailyActiveUser):
        await session.execute(delete(table).where(table.day.between(first, last)))
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
            "durations": p.durations,
            "max_ms": p.max_ms,
        }
        for day, f in figures.items()
        for (feature, provider), p in f.performance.items()
    ]
    if rows:
        await session.execute(insert(StatsDailyPerformance), rows)
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
