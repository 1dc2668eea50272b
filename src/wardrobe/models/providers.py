"""Vendor callbacks (D8): the inbox of what AI vendors POST back about their jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, UniqueConstraint
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


class ProviderSwitch(Base):
    """An operator's manual switch of a provider (issue 6 item 7): off means no new call goes to
    it (steps fall back to their next candidate) until it is switched on again."""

    __tablename__ = "provider_switches"

    slug: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    updated_by: Mapped[int | None] = mapped_column(BigId)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
