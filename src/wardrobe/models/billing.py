"""Billing: plans (SKUs), one quota account per user, holds per task, the append-only ledger.

Quota semantics: ``balance`` is what the user owns, ``held`` is what open tasks have reserved,
``available = balance - held``. A reserve raises ``held``; a confirm lowers both; a cancel lowers
``held`` only. Each ledger row records the change to both, so ``balance`` always equals the sum of
the ledger's ``amount`` and ``held`` the sum of its ``hold_delta``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class PlanKind(StrEnum):
    MEMBERSHIP = "membership"
    QUOTA_PACK = "quota_pack"


class LedgerKind(StrEnum):
    GRANT = "grant"
    PURCHASE = "purchase"
    RESERVE = "reserve"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    EXPIRE = "expire"
    ADMIN_ADJUSTMENT = "admin_adjustment"
    REFERRAL_REWARD = "referral_reward"
    REFERRAL_REBATE = "referral_rebate"  # the referrer's share of an invitee's purchase
    REFUND_CLAWBACK = "refund_clawback"  # quota taken back when a purchase is refunded


class HoldStatus(StrEnum):
    HELD = "held"
    CONFIRMED = "confirmed"
    CANCELED = "canceled"


class Plan(Base):
    """What is sold. A plan is on sale while ``is_active`` and inside ``[valid_from, valid_to)``
    (either end open when null), on the payment channels it lists (none listed: every channel).
    A membership's ``tier`` and ``features`` decide which plan-gated features its members use."""

    __tablename__ = "plans"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str | None] = mapped_column(String(64))
    price_fen: Mapped[int] = mapped_column(Integer)
    quota: Mapped[int] = mapped_column(Integer)
    period_days: Mapped[int | None] = mapped_column(Integer)
    tier: Mapped[str | None] = mapped_column(String(32))
    features: Mapped[list[str]] = mapped_column(JSON, default=list)  # feature keys a membership unlocks
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)  # payment channels; empty = all
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("price_fen >= 0", name="price_non_negative"),
        CheckConstraint("quota >= 0", name="quota_non_negative"),
    )


class QuotaAccount(Base):
    """``membership_started_at`` is when the current membership term began (a purchase while no
    membership was active; renewals before the end keep it): the expiry job counts what the term
    granted and spent from there (modules/billing/memberships.py)."""

    __tablename__ = "quota_accounts"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_non_negative"),
        CheckConstraint("held >= 0", name="held_non_negative"),
        CheckConstraint("held <= balance", name="held_within_balance"),
        Index("ix_quota_accounts_membership_expires_at", "membership_expires_at"),
    )

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), primary_key=True)
    balance: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0)
    membership_sku: Mapped[str | None] = mapped_column(String(64))
    membership_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    membership_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class QuotaHold(Base):
    """One reservation per task (``ref``), settled exactly once: confirmed or canceled."""

    __tablename__ = "quota_holds"
    __table_args__ = (
        Index("ix_quota_holds_open", "status", "expires_at"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    ref: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=HoldStatus.HELD.value)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LedgerEntry(Base):
    """Append-only. ``(kind, ref)`` is unique, which makes every credit and settlement idempotent."""

    __tablename__ = "quota_ledger"
    __table_args__ = (
        UniqueConstraint("kind", "ref", name="uq_quota_ledger_kind_ref"),
        Index("ix_quota_ledger_user_id_id", "user_id", "id"),
        # Accounting's CSV export reads a date range.
        Index("ix_quota_ledger_created_at", "created_at"),
        # Statistics: quota granted and spent per day reads only the kinds it counts.
        Index("ix_quota_ledger_kind_created_at", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(24))
    amount: Mapped[int] = mapped_column(Integer)
    hold_delta: Mapped[int] = mapped_column(Integer, default=0)
    balance_after: Mapped[int] = mapped_column(Integer)
    held_after: Mapped[int] = mapped_column(Integer)
    ref: Mapped[str] = mapped_column(String(96))
    note: Mapped[str | None] = mapped_column(String(255))
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
