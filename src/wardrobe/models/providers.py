"""Vendor callbacks (D8): the inbox of what AI vendors POST back about their jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class VendorCallback(Base):
    """Every accepted vendor callback, once per (provider, vendor event).

    A callback is a hint, never the truth: the worker that owns the step confirms it by asking the
    vendor (outputs, status). ``ref`` is the step it was addressed to (from our signed callback
    URL), which also finds the vendor job of a submit whose answer was lost."""

    __tablename__ = "vendor_callbacks"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_vendor_callbacks_event"),
        Index("ix_vendor_callbacks_ref", "ref"),
        Index("ix_vendor_callbacks_job", "provider", "vendor_task_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(48))
    ref: Mapped[str] = mapped_column(String(96))
    vendor_task_id: Mapped[str | None] = mapped_column(String(96))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
