"""The figures of a day and of a range, as the live queries compute them and the rollup tables
keep them, and the duration histogram the p95 is read from. Pure Python: no database here."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from wardrobe.models.stats import DURATION_BUCKETS

# Upper bounds (ms, inclusive) of the duration buckets: floor(50 ms × 2^(k/3)), k = 0..48, i.e.
# three buckets per doubling from 50 ms to 3,276,800 ms (~55 min); one more bucket holds
# everything longer. A whole number of ms is at most a bound exactly when it is at most
# 50 × 2^(k/3), so the bucket of ms > 50 is also ceil(3 × log2(ms / 50)): how MariaDB computes it
# (repository.duration_bucket), far cheaper than fifty comparisons per row. Consecutive bounds
# are less than 2^(1/3) ≈ 1.26 apart, which bounds the p95's error.
BOUNDS_MS: tuple[int, ...] = tuple(math.floor(50 * 2 ** (k / 3)) for k in range(49))
BUCKETS = len(BOUNDS_MS) + 1
FINISHED = ("succeeded", "failed")
if BUCKETS != DURATION_BUCKETS:  # the rollup table has one column per bucket
    raise RuntimeError("the duration buckets and the columns of stats_daily_performance differ")


def bucket_of(ms: int) -> int:
    """The bucket of a duration: the first whose bound is at least ``ms`` (the last: longer)."""
    for index, bound in enumerate(BOUNDS_MS):
        if ms <= bound:
            return index
    return len(BOUNDS_MS)


def p95_ms(durations: list[int], max_ms: int | None) -> int | None:
    """The 95th percentile (nearest rank) as the histogram can tell it: the upper bound of the
    bucket holding the ceil(0.95 n)-th shortest duration, capped by the longest duration seen (so
    the overflow bucket answers the maximum). Never below the true value, less than 26 % above it
    (one bucket's width); ``None`` without durations."""
    total = sum(durations)
    if total == 0 or max_ms is None:
        return None
    rank = -(-total * 95 // 100)  # ceil(0.95 × total) in integers: no float rounding at the edge
    seen = 0
    for index, count in enumerate(durations):
        seen += count
        if seen >= rank:
            return max_ms if index >= len(BOUNDS_MS) else min(BOUNDS_MS[index], max_ms)
    return max_ms  # not reached: the loop ends on the last non-empty bucket


@dataclass(slots=True)
class Performance:
    """Finished tasks of one (feature, provider): how many, how many failed, their durations."""

    tasks: int = 0
    failed: int = 0
    durations: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    max_ms: int | None = None

    def add(self, other: Performance) -> None:
        self.tasks += other.tasks
        self.failed += other.failed
        self.durations = [a + b for a, b in zip(self.durations, other.durations, strict=True)]
        if other.max_ms is not None:
            self.max_ms = other.max_ms if self.max_ms is None else max(self.max_ms, other.max_ms)


@dataclass(slots=True)
class Revenue:
    """One payment channel's day or range: orders paid, what they paid, what was refunded."""

    orders: int = 0
    revenue_fen: int = 0
    refunds_fen: int = 0


@dataclass(slots=True)
class Point:
    """One day of the series."""

    new_users: int = 0
    active_users: int = 0
    tasks: int = 0
    tasks_failed: int = 0
    tasks_finished: int = 0  # succeeded or failed: the denominator of the failure rate
    quota_granted: int = 0
    quota_spent: int = 0
    revenue_fen: int = 0
    refunds_fen: int = 0


@dataclass(slots=True)
class Breakdown:
    """Tasks by (feature, status), performance by (feature, provider or ""), revenue by channel:
    of one day, or summed over a range."""

    tasks: dict[tuple[str, str], int] = field(default_factory=dict)
    performance: dict[tuple[str, str], Performance] = field(default_factory=dict)
    revenue: dict[str, Revenue] = field(default_factory=dict)

    def perf(self, feature: str, provider: str) -> Performance:
        return self.performance.setdefault((feature, provider), Performance())

    def channel(self, channel: str) -> Revenue:
        return self.revenue.setdefault(channel, Revenue())

    def add(self, other: Breakdown) -> None:
        for key, count in other.tasks.items():
            self.tasks[key] = self.tasks.get(key, 0) + count
        for key, perf in other.performance.items():
            self.perf(*key).add(perf)
        for channel, r in other.revenue.items():
            total = self.channel(channel)
            total.orders += r.orders
            total.revenue_fen += r.revenue_fen
            total.refunds_fen += r.refunds_fen


@dataclass(slots=True)
class DayFigures(Breakdown):
    """Everything the overview shows about one UTC day (what the rollup tables keep of it)."""

    new_users: int = 0
    active_users: int = 0
    quota_granted: int = 0
    quota_spent: int = 0

    def point(self) -> Point:
        return Point(
            new_users=self.new_users,
            active_users=self.active_users,
            tasks=sum(self.tasks.values()),
            tasks_failed=sum(n for (_, status), n in self.tasks.items() if status == "failed"),
            tasks_finished=sum(n for (_, status), n in self.tasks.items() if status in FINISHED),
            quota_granted=self.quota_granted,
            quota_spent=self.quota_spent,
            revenue_fen=sum(r.revenue_fen for r in self.revenue.values()),
            refunds_fen=sum(r.refunds_fen for r in self.revenue.values()),
        )

    @property
    def open_tasks(self) -> int:
        """Tasks still queued or running: their day's figures will change."""
        return sum(n for (_, status), n in self.tasks.items() if status in ("queued", "running"))


def days_between(start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end``, both included."""
    return [date.fromordinal(n) for n in range(start.toordinal(), end.toordinal() + 1)]


def intervals(days: Iterable[date]) -> list[tuple[date, date]]:
    """Runs of consecutive days as (first, last), in order: each is one set of range queries."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1].toordinal() + 1 == day.toordinal():
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def rate(failed: int, finished: int) -> float:
    """Failed among finished (succeeded or failed); 0.0 when nothing finished."""
    return round(failed / finished, 4) if finished else 0.0
