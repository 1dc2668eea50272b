"""What ``GET /api/v1/admin/stats/overview`` answers (the contract's "Statistics" section)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Granularity = Literal["day"]


class Totals(BaseModel):
    new_users: int
    active_users: int = Field(description="Distinct users who created a task in the range")
    tasks: int
    tasks_failed: int
    failure_rate: float = Field(description="Failed among finished (succeeded or failed) tasks; 0 when none")
    quota_granted: int
    quota_spent: int
    revenue_fen: int
    refunds_fen: int


class SeriesPoint(BaseModel):
    date: dt.date
    new_users: int
    active_users: int
    tasks: int
    tasks_failed: int
    quota_granted: int
    quota_spent: int
    revenue_fen: int
    refunds_fen: int


class FeatureStatusCount(BaseModel):
    feature: str
    status: str
    count: int


class ProviderPerformance(BaseModel):
    feature: str
    provider: str | None = Field(description="null: tasks that ended before any step ran on a provider")
    tasks: int = Field(description="Finished (succeeded or failed) tasks with a step on this provider")
    failed: int
    failure_rate: float
    p95_ms: int | None = Field(
        description="95th percentile of the tasks' durations (started to finished), read from "
        "log-spaced buckets: never below the true value, at most 26 % above it; null without durations"
    )


class ChannelRevenue(BaseModel):
    channel: str
    orders: int
    revenue_fen: int
    refunds_fen: int


class StatsOverview(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: dt.date = Field(alias="from")
    to: dt.date
    granularity: Granularity
    totals: Totals
    series: list[SeriesPoint]
    tasks_by_feature: list[FeatureStatusCount]
    performance: list[ProviderPerformance]
    revenue_by_channel: list[ChannelRevenue]
