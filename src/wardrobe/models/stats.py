"""Daily rollups of the business figures (``modules/admin/stats``): one row set per UTC day,
written by the rollup job and read by ``GET /api/v1/admin/stats/overview``.

Every table is keyed by ``day`` first; the job replaces a day's rows (delete, then insert) in one
transaction, so a day is either wholly the old figures or wholly the new ones.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Column, Date, Index, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime


class StatsDaily(Base):
    """One row per rolled-up day: the figures that are not a sum of the other tables' rows, and
    whether the day is final (see the module docstring of ``modules/admin/stats``)."""

    __tablename__ = "stats_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    new_users: Mapped[int] = mapped_column(Integer)
    active_users: Mapped[int] = mapped_column(Integer)
    quota_granted: Mapped[int] = mapped_column(BigInteger)
    quota_spent: Mapped[int] = mapped_column(BigInteger)
    final: Mapped[bool] = mapped_column(Boolean)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StatsDailyTasks(Base):
    """Tasks created that day, by feature and (current) status."""

    __tablename__ = "stats_daily_tasks"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    feature: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    tasks: Mapped[int] = mapped_column(Integer)


# Buckets of the duration histogram (modules/admin/stats/figures.py says their bounds), one column
# each, so that a range's histogram is a SUM per column in the database.
DURATION_BUCKETS = 50
DURATION_COLUMNS = tuple(f"d{index:02d}" for index in range(DURATION_BUCKETS))

# Finished tasks (succeeded or failed) created that day, by feature and provider ("" when no step
# ran on a provider): how many, how many failed, the longest duration, and how many fell in each
# duration bucket (d00..d49). A table rather than a mapped class: fifty counters are columns
# that only SQL reads and writes.
stats_daily_performance = Table(
    "stats_daily_performance",
    Base.metadata,
    Column("day", Date, primary_key=True),
    Column("feature", String(64), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("tasks", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("max_ms", BigInteger, nullable=True),
    *(Column(name, Integer, nullable=False) for name in DURATION_COLUMNS),
)


class StatsDailyRevenue(Base):
    """Orders paid that day and refunds that succeeded that day, by payment channel."""

    __tablename__ = "stats_daily_revenue"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer)
    revenue_fen: Mapped[int] = mapped_column(BigInteger)
    refunds_fen: Mapped[int] = mapped_column(BigInteger)


class StatsDailyActiveUser(Base):
    """Who was active that day (created a task): the distinct users of a range are counted over
    these pairs, far fewer rows than the tasks themselves."""

    __tablename__ = "stats_daily_active_users"
    # Whether a user was active on some of a range's days, one seek per user: what the overview
    # asks of today's users to add them to the range's distinct count.
    __table_args__ = (Index("ix_stats_daily_active_users_user_id_day", "user_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
