"""DTOs of the support console's task routes (/api/v1/admin/tasks). Unlike the owner's view
(schemas.py), these carry the internals: providers, vendor job ids, internal error codes and
messages, the quota hold and its ledger rows."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from wardrobe.core.openapi import server_check
from wardrobe.core.schemas import InputModel
from wardrobe.modules.tasks.schemas import TaskStatusName

# RFC 3339 date-time, the `date-time` format of JSON Schema: a date, a time and an offset.
_ISO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$")


def _iso_time(value: Any) -> Any:
    """A query's time as an aware UTC datetime, from exactly RFC 3339 text (never a Unix time or a
    time without its offset, which pydantic's lax parsing would take)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    found = _ISO_TIME.match(value) if isinstance(value, str) else None
    if found is not None:
        day, clock, fraction, offset = found.groups()
        micro = f".{fraction[:6].ljust(6, '0')}" if fraction else ""  # Python reads 6 digits at most
        text = f"{day}T{clock}{micro}{'+00:00' if offset in ('Z', 'z') else offset}"
        try:
            return datetime.fromisoformat(text).astimezone(UTC)
        except (ValueError, OverflowError):
            pass  # 2026-02-30, 24:00:00, a leap second, or before year 1 in UTC
    raise PydanticCustomError("datetime_type", "must be a time written as in RFC 3339, e.g. 2026-12-01T00:00:00Z")


_TIME_CHECK = server_check("a real calendar time (no leap second, 24:00 or February 30) within years 1-9999 in UTC")
IsoTimeQuery = Annotated[datetime | None, BeforeValidator(_iso_time)]
FromQuery = Annotated[
    IsoTimeQuery, Query(alias="from", description="Created at or after (RFC 3339)", json_schema_extra=_TIME_CHECK)
]
ToQuery = Annotated[
    IsoTimeQuery, Query(alias="to", description="Created before (RFC 3339)", json_schema_extra=_TIME_CHECK)
]
# Slugs and codes as stored: bounded like their columns.
FeatureQuery = Annotated[str | None, Query(min_length=1, max_length=64, description="A feature key")]
ProviderQuery = Annotated[str | None, Query(min_length=1, max_length=64, description="A step ran on this provider")]
ErrorCodeQuery = Annotated[str | None, Query(min_length=1, max_length=64, description="The task's internal error code")]
StatusQuery = Annotated[TaskStatusName | None, Query()]


class ActionReason(InputModel):
    """Why an operator acts on a task (kept in the audit log)."""

    reason: str = Field(min_length=2, max_length=500)


class AdminTaskRow(BaseModel):
    id: str = Field(description="The public task id")
    user_id: int
    feature: str
    status: TaskStatusName
    progress: int
    quota_cost: int
    refunded: bool
    error_code: str | None = Field(description="Internal error code (vendor codes included)")
    error_message: str | None
    providers: list[str] = Field(description="Providers its steps ran on, in the order first used")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None = Field(description="From its first start to its end")
    retry_of: str | None = Field(description="The failed task this one retries")
    cancel_requested: bool
    updated_at: datetime
    deleted_at: datetime | None = Field(description="Deleted by its owner (inputs and outputs erased)")


class AdminTaskPage(BaseModel):
    items: list[AdminTaskRow]
    next_cursor: str | None


class AdminStep(BaseModel):
    step_id: str
    status: str
    provider: str | None
    account: str | None = Field(description="The provider account (null: the provider's settings)")
    attempts: int
    vendor_task_id: str | None
    error: str | None = Field(description="Internal error of the step")
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None


class AdminHold(BaseModel):
    ref: str
    amount: int
    status: str = Field(description="held, confirmed (spent) or canceled (refunded)")
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None


class AdminLedgerRow(BaseModel):
    id: int
    kind: str
    amount: int
    hold_delta: int
    balance_after: int
    ref: str
    created_at: datetime


class AdminAction(BaseModel):
    action: str
    actor_id: int | None
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime


class AdminOutput(BaseModel):
    name: str
    url: str | None = None
    content_type: str | None = None
    object_key: str | None = None
    value: Any = None


class AdminTaskDetail(AdminTaskRow):
    inputs: dict[str, Any]
    outputs: list[AdminOutput]
    steps: list[AdminStep]
    hold: AdminHold | None = Field(description="Null for a task that cost nothing (a retry)")
    ledger: list[AdminLedgerRow] = Field(description="The quota ledger rows of its hold, oldest first")
    retried_by: str | None = Field(description="The task that retried this one")
    trace_id: str | None = Field(
        description="The id of the request that created it: every log line of its runs and its pushes carry it"
    )
    actions: list[AdminAction] = Field(description="Staff actions on this task (audit log), oldest first")
