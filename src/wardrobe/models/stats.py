"""Daily rollups of the business figures (``modules/admin/stats``): one row set per UTC day,
written by the rollup job and read by ``GET /api/v1/admin/stats/overview``.

Every table is keyed by ``day`` first; the job replaces a day's rows (delete, then insert) in one
transaction, so a day is either wholly the old figures or wholly the new ones.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Boolean, Date, Integer, String
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


class StatsDailyPerformance(Base):
    """Finished tasks (succeeded or failed) created that day, by feature and provider ("" when no
    step ran on a provider), with a histogram of their durations over fixed log-spaced buckets."""

    __tablename__ = "stats_daily_performance"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    feature: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    tasks: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    # Counts per bucket of ``modules/admin/stats/figures.BOUNDS_MS`` (one more for the overflow).
    durations: Mapped[list[int]] = mapped_column(JSON)
    max_ms: Mapped[int | None] = mapped_column(BigInteger)


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

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
