"""A payment platform for development: the ``sandbox`` channel.

It lets the purchase flow be tried end to end without merchant accounts, and takes the very path a
real payment takes: the platform's checkout page (``/app/sandbox-checkout.html``) pays, the
"platform" signs a notification, and that notification is verified and handled by the same code as
WeChat Pay's and Alipay's (inbox first, fulfilment once, in one transaction). It is refused in
production (``Settings.production_problems``) and off outside development unless asked for.

The protocol is our own, as small as a platform's can be, so it is written here rather than taken
from a library:

- **Checkout**: ``create`` answers ``{checkout_url}``; the URL carries a token, an HMAC of the order
  number and amount under the sandbox key, so only the one who was given the URL can pay, and only
  that amount (the fulfilment still checks the amount against the order, as for any platform).
- **Notifications**: a JSON body, signed HMAC-SHA256 over ``"{timestamp}.{body}"`` in the headers
  ``Wardrobe-Sandbox-Timestamp`` and ``Wardrobe-Sandbox-Signature``; older than five minutes, or
  from the future, is refused like a forged one. ``POST /api/v1/payments/sandbox/notify`` takes them.
- The sandbox keeps no trades of its own: ``query`` answers "pending" (an unpaid order is closed at
  its expiry as usual) and refunds succeed at once.

The key is derived from the JWT secret, so every process of a deployment agrees on it without a
setting of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from wardrobe.models import Order
from wardrobe.modules.payments.gateway import (
    Notification,
    NotificationKind,
    PlatformRefused,
    RefundResult,
    RefundState,
    SignatureInvalid,
    Trade,
    TradeState,
)

PROVIDER = "sandbox"
CHECKOUT_PAGE = "/app/sandbox-checkout.html"
TIMESTAMP_HEADER = "wardrobe-sandbox-timestamp"
SIGNATURE_HEADER = "wardrobe-sandbox-signature"
TOLERANCE_SECONDS = 300
PAID_EVENT = "TRANSACTION.SUCCESS"


def sandbox_key(jwt_secret: str) -> bytes:
    return hmac.new(jwt_secret.encode(), b"wardrobe payment sandbox v1", hashlib.sha256).digest()


class SandboxGateway:
    provider = PROVIDER

    def __init__(self, key: bytes) -> None:
        self._key = key

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    # -- the checkout ----------------------------------------------------------------------------

    def checkout_token(self, order_no: str, amount_fen: int) -> str:
        return hmac.new(self._key, f"checkout:{order_no}:{amount_fen}".encode(), hashlib.sha256).hexdigest()[:40]

    def token_ok(self, order_no: str, amount_fen: int, token: str) -> bool:
        return hmac.compare_digest(self.checkout_token(order_no, amount_fen), token)

    async def create(self, order: Order, *, notify_url: str, openid: str | None, client_ip: str) -> dict[str, Any]:
        query = urlencode(
            {
                "order_no": order.order_no,
                "amount_fen": order.amount_fen,
                "name": order.name,
                "token": self.checkout_token(order.order_no, order.amount_fen),
            }
        )
        return {"checkout_url": f"{CHECKOUT_PAGE}?{query}"}

    def paid_notification(
        self, order_no: str, amount_fen: int, *, now: float | None = None
    ) -> tuple[dict[str, str], bytes]:
        """What the platform sends once the buyer paid: (headers, body), signed."""
        at = time.time() if now is None else now
        body = json.dumps(
            {
                "id": f"sbx_evt_{uuid.uuid4().hex}",
                "event_type": PAID_EVENT,
                "order_no": order_no,
                "transaction_id": f"sbx_txn_{uuid.uuid4().hex[:24]}",
                "amount_fen": amount_fen,
                "paid_at": datetime.fromtimestamp(at, UTC).isoformat(),
            },
            separators=(",", ":"),
        ).encode()
        return self.sign(body, at), body

    def sign(self, body: bytes, at: float) -> dict[str, str]:
        stamp = str(int(at))
        signature = hmac.new(self._key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature}

    # -- the platform's API ----------------------------------------------------------------------

    async def query(self, order_no: str) -> Trade:
        return Trade(TradeState.PENDING)

    async def close(self, order_no: str) -> None:
        return None

    async def refund(
        self, order: Order, *, refund_no: str, amount_fen: int, reason: str, notify_url: str
    ) -> RefundResult:
        if amount_fen <= 0:
            raise PlatformRefused("INVALID_REQUEST", "amount must be positive")
        return RefundResult(RefundState.SUCCEEDED, platform_refund_id=f"sbx_rfd_{refund_no}")

    async def query_refund(self, order: Order, refund_no: str) -> RefundResult:
        return RefundResult(RefundState.SUCCEEDED, platform_refund_id=f"sbx_rfd_{refund_no}")

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        stamp = headers.get(TIMESTAMP_HEADER, "")
        given = headers.get(SIGNATURE_HEADER, "")
        if not stamp.isdigit() or not given:
            raise SignatureInvalid("unsigned")
        if abs(time.time() - int(stamp)) > TOLERANCE_SECONDS:
            raise SignatureInvalid("stale timestamp")
        expected = hmac.new(self._key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            raise SignatureInvalid("bad signature")
        try:
            event = json.loads(body)
            paid = event["event_type"] == PAID_EVENT
            trade = Trade(
                TradeState.PAID,
                transaction_id=str(event["transaction_id"]),
                paid_fen=int(event["amount_fen"]),
                paid_at=datetime.fromisoformat(str(event["paid_at"])),
            )
            return Notification(
                event_id=str(event["id"]),
                event_type=str(event["event_type"]),
                kind=NotificationKind.PAYMENT if paid else NotificationKind.OTHER,
                order_no=str(event["order_no"]),
                merchant_ok=True,
                trade=trade if paid else None,
                record={k: event[k] for k in ("id", "event_type", "order_no", "transaction_id", "amount_fen")},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SignatureInvalid("malformed body") from exc
