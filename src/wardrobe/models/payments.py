"""Payments: orders, their refunds, and the inbox of platform notifications.

An order snapshots what was sold (SKU, quota, period, price) so a later change of the plan never
changes what a paid order delivers. Amounts are integers in fen. ``order_no`` is the
``out_trade_no`` given to the platform. Every quota movement an order causes is a ledger entry
whose ``ref`` names the order or refund, which is what makes fulfilment and claw-back idempotent.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class OrderStatus(StrEnum):
    PENDING = "pending"  # created, waiting for the payment
    PAID = "paid"  # the platform confirmed the payment; fulfilment follows in the same transaction
    FULFILLED = "fulfilled"  # quota credited / membership extended
    CLOSED = "closed"  # expired or closed unpaid
    REFUNDING = "refunding"  # a refund is under way at the platform
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class PaymentChannel(StrEnum):
    WECHAT_JSAPI = "wechat_jsapi"
    WECHAT_NATIVE = "wechat_native"
    ALIPAY_PAGE = "alipay_page"
    ALIPAY_WAP = "alipay_wap"
    ALIPAY_QR = "alipay_qr"
    SANDBOX = "sandbox"  # development only (modules/payments/sandbox.py)

    @property
    def provider(self) -> str:
        if self is PaymentChannel.SANDBOX:
            return "sandbox"
        return "wechat" if self.value.startswith("wechat") else "alipay"


class RefundStatus(StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_user_id_id", "user_id", "id"),
        Index("ix_orders_status_created_at", "status", "created_at"),
        # Accounting's CSV export reads a date range.
        Index("ix_orders_created_at", "created_at"),
        Index("ix_orders_paid_at", "paid_at"),  # statistics: revenue on the day it was paid
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_fen >= 0 AND refund_pending_fen >= 0 AND refunded_fen + refund_pending_fen <= paid_fen",
            name="refund_within_paid",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    sku: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    quota: Mapped[int] = mapped_column(Integer)
    period_days: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    amount_fen: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), default=OrderStatus.PENDING.value)
    pay_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    paid_fen: Mapped[int] = mapped_column(Integer, default=0)
    refunded_fen: Mapped[int] = mapped_column(Integer, default=0)
    refund_pending_fen: Mapped[int] = mapped_column(Integer, default=0)  # asked for, not yet settled
    quota_clawed: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fulfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Refund(Base):
    """One refund request; ``refund_no`` is the platform's idempotency key (out_refund_no /
    out_request_no): sending it again never refunds twice."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index("ix_refunds_settled_at", "settled_at"),  # statistics: refunds on the day they succeeded
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    refund_no: Mapped[str] = mapped_column(String(40), unique=True)
    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("orders.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(Integer)
    quota: Mapped[int] = mapped_column(Integer, default=0)  # clawed back when it succeeds
    reason: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PROCESSING.value)
    platform_refund_id: Mapped[str | None] = mapped_column(String(64))
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PaymentNotification(Base):
    """The inbox: every verified platform notification, once per (provider, event id)."""

    __tablename__ = "payment_notifications"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_payment_notifications_event"),
        Index("ix_payment_notifications_pending", "processed_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(96))
    event_type: Mapped[str] = mapped_column(String(48))
    order_no: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcome: Mapped[str | None] = mapped_column(String(48))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
