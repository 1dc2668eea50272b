"""Payment DTOs: what clients send to order and refund, and the orders and refunds they get back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from wardrobe.core.schemas import EnumValue, InputModel
from wardrobe.models import OrderStatus, PaymentChannel, PlanKind, RefundStatus


class OrderCreate(InputModel):
    sku: str = Field(min_length=1, max_length=64)
    channel: EnumValue[PaymentChannel]


class OrderOut(BaseModel):
    order_no: str
    status: OrderStatus
    sku: str
    kind: PlanKind
    name: str
    channel: PaymentChannel
    amount_fen: int
    paid_fen: int
    refunded_fen: int
    pay_params: dict[str, Any] | None = Field(
        description="wechat_jsapi: the wx.requestPayment parameters; wechat_native: {code_url}; "
        "alipay_qr: {qr_code}; alipay_page / alipay_wap: {pay_url} to open. Only while pending."
    )
    expires_at: datetime
    paid_at: datetime | None
    created_at: datetime


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


class RefundCreate(InputModel):
    reason: str = Field(min_length=2, max_length=255)
    amount_fen: int | None = Field(default=None, gt=0, description="default: everything still refundable")


class RefundOut(BaseModel):
    refund_no: str
    order_no: str
    amount_fen: int
    quota: int = Field(description="quota taken back when the refund succeeds")
    status: RefundStatus
    reason: str
    created_at: datetime
    settled_at: datetime | None


class AdminOrderOut(OrderOut):
    user_id: int
    transaction_id: str | None
    quota: int
    quota_clawed: int
    refunds: list[RefundOut] = Field(default_factory=list)
