"""Tasks, their steps, and the outbox that carries queue messages after commit."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_tasks_user_id_idempotency_key"),
        Index("ix_tasks_user_id_id", "user_id", "id"),
        Index("ix_tasks_user_id_status_id", "user_id", "status", "id"),
        Index("ix_tasks_user_id_feature_id", "user_id", "feature_key", "id"),
        Index("ix_tasks_status_lease", "status", "lease_expires_at"),
        Index("ix_tasks_status_id", "status", "id"),
        # The support console's filters, each walked newest first (keyset on id).
        Index("ix_tasks_feature_key_id", "feature_key", "id"),
        Index("ix_tasks_error_code_id", "error_code", "id"),
        # A failed task is retried (at no charge) at most once: the race is settled here.
        UniqueConstraint("retry_of", name="uq_tasks_retry_of"),
        # The retention sweep: finished tasks whose files are still kept, oldest first.
        Index("ix_tasks_files_purged_at_finished_at", "files_purged_at", "finished_at"),
        # Statistics: a day's tasks by creation time; with user_id the index alone answers "who
        # was active" (distinct users) without reading the rows; the console's created range too.
        Index("ix_tasks_created_at_user_id", "created_at", "user_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    feature_key: Mapped[str] = mapped_column(String(64))
    pipeline_schema_id: Mapped[int] = mapped_column(BigId, ForeignKey("pipeline_schemas.id"))
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.QUEUED.value)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(255))
    quota_cost: Mapped[int] = mapped_column(Integer)
    eligible_for_refund: Mapped[bool] = mapped_column(Boolean, default=True)
    refunded: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Deleted by its owner: hidden from every user-facing read; the row stays because the ledger
    # names it (``task:{public_id}``), with its inputs and outputs erased.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its uploads and results were deleted (retention, deletion): outputs are then empty.
    files_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The failed task an operator retried as this one (which then costs nothing).
    retry_of: Mapped[int | None] = mapped_column(BigId, ForeignKey("tasks.id"))
    # The trace id of the request that created it: every run, in any worker, logs and pushes under
    # it (core/tracing.py); with OpenTelemetry on, also that request's W3C traceparent.
    trace_id: Mapped[str | None] = mapped_column(String(64))
    trace_parent: Mapped[str | None] = mapped_column(String(64))


class TaskStep(Base):
    """The persisted state of one step of one task: what lets another worker resume it."""

    __tablename__ = "task_steps"
    __table_args__ = (
        UniqueConstraint("task_id", "step_id", name="uq_task_steps_task_id_step_id"),
        # "Tasks that used this provider", newest first: the support console's provider filter.
        Index("ix_task_steps_provider_task_id", "provider", "task_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(BigId, ForeignKey("tasks.id"))
    step_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=StepStatus.PENDING.value)
    provider: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    vendor_task_id: Mapped[str | None] = mapped_column(String(128))
    # The provider account the vendor job belongs to (polls and cancels must use the same one).
    account: Mapped[str | None] = mapped_column(String(32))
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(String(500))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OutboxMessage(Base):
    """A message written in the same transaction as the change it announces, published after
    commit by the relay, so a rolled-back change is never announced and a committed one always is."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "published_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The trace of the work that wrote it, bound again while it is published.
    trace_id: Mapped[str | None] = mapped_column(String(64))
    trace_parent: Mapped[str | None] = mapped_column(String(64))
