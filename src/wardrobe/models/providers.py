"""Vendor callbacks, operators' provider switches and the vendor accounts steps run on."""

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
    """An operator's manual switch of a provider: off means no new call goes to
    it (steps fall back to their next candidate) until it is switched on again."""

    __tablename__ = "provider_switches"

    slug: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    updated_by: Mapped[int | None] = mapped_column(BigId)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProviderAccount(Base):
    """One account at a vendor: its credentials, endpoint and limits. Several
    accounts of one provider share its steps, each within its own concurrency and rate.

    The secret is never stored in clear: either ``secret_env`` names the environment variable that
    holds it, or ``secret_sealed`` holds it encrypted (AES-256-GCM under the deployment's
    ``WARDROBE_PROVIDER_SECRETS_KEY``, bound to this provider and name). ``key_id`` is the
    non-secret half of a key pair (a Tencent Cloud SecretId), if the vendor has one."""

    __tablename__ = "provider_accounts"
    __table_args__ = (UniqueConstraint("provider", "name", name="uq_provider_accounts_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    key_id: Mapped[str | None] = mapped_column(String(128))
    secret_env: Mapped[str | None] = mapped_column(String(128))
    secret_sealed: Mapped[str | None] = mapped_column(String(1024))
    endpoint: Mapped[str | None] = mapped_column(String(255))
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    rate: Mapped[str | None] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(String(500), default="")
    updated_by: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
