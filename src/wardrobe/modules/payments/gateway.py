"""What the payment service needs from a payment platform, whatever its protocol, and the set of
platforms this process is configured for (``Payments``).

Each adapter (``wechat.py``, ``alipay.py``) turns its platform's answers into these few shapes and
its failures into two exceptions: ``PlatformUnavailable`` (try again later: network trouble, 5xx,
rate limit, "unknown result") and ``PlatformRefused`` (a definite answer: the platform's own code,
e.g. ``ORDER_CLOSED`` or ``ACQ.TRADE_HAS_SUCCESS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.models import Order

NOTIFY_PATHS = {
    "wechat": "/api/v1/payments/wechat/notify",
    "wechat_refund": "/api/v1/payments/wechat/refund-notify",
    "alipay": "/api/v1/payments/alipay/notify",
    "sandbox": "/api/v1/payments/sandbox/notify",
}


class TradeState(StrEnum):
    PENDING = "pending"  # not paid yet (or unknown to the platform yet)
    PAID = "paid"
    CLOSED = "closed"
    REFUNDED = "refunded"  # paid, then (partly) refunded


class RefundState(StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Trade:
    state: TradeState
    transaction_id: str | None = None
    paid_fen: int = 0
    paid_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    state: RefundState
    platform_refund_id: str | None = None


class NotificationKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified notification. ``merchant_ok`` is False when it names another merchant or app."""

    event_id: str
    event_type: str
    kind: NotificationKind
    order_no: str | None
    merchant_ok: bool
    trade: Trade | None = None
    refund_no: str | None = None
    refund: RefundResult | None = None
    refund_fen: int = 0
    record: dict[str, Any] = field(default_factory=dict)  # what the inbox keeps (no secrets)


class PlatformUnavailable(Exception):
    """No definite answer: retry later with the same parameters."""


class PlatformRefused(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class SignatureInvalid(Exception):
    """A notification (or response) whose signature, timestamp or ciphertext does not verify."""


class PaymentGateway(Protocol):
    provider: str

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def create(self, order: Order, *, notify_url: str, openid: str | None, client_ip: str) -> dict[str, Any]:
        """Open the trade at the platform; returns what the client needs to pay (``pay_params``)."""
        ...

    async def query(self, order_no: str) -> Trade: ...

    async def close(self, order_no: str) -> None: ...

    async def refund(
        self, order: Order, *, refund_no: str, amount_fen: int, reason: str, notify_url: str
    ) -> RefundResult: ...

    async def query_refund(self, order: Order, refund_no: str) -> RefundResult: ...

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and decode a notification; raises ``SignatureInvalid``."""
        ...


@dataclass
class Payments:
    """The configured platforms of this process, by provider (``wechat``, ``alipay``)."""

    gateways: dict[str, PaymentGateway]
    notify_base_url: str

    def gateway(self, provider: str) -> PaymentGateway:
        found = self.gateways.get(provider)
        if found is None:
            raise AppError(ErrorCode.PAYMENT_CHANNEL_UNAVAILABLE, detail=f"{provider} is not configured")
        return found

    def notify_url(self, which: str) -> str:
        return self.notify_base_url.rstrip("/") + NOTIFY_PATHS[which]

    async def start(self) -> None:
        for gateway in self.gateways.values():
            await gateway.start()

    async def aclose(self) -> None:
        for gateway in self.gateways.values():
            await gateway.aclose()
