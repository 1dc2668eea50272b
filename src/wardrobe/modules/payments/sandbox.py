"""A payment platform for development: the ``sandbox`` channel.

It lets the purchase flow be tried end to end without merchant accounts, and takes the very path a
real payment takes: the platform's checkout page (``/app/sandbox-checkout.html``) pays, the
"platform" signs a notification, and that notification is verified and handled by the same code as
WeChat Pay's and Alipay's (inbox first, fulfilment once, in one transaction). It is refused in
production (``Settings.production_problems``) and off outside development unless asked for.

The checkout is our own, as small as a platform's can be; the notifications are signed by the
library every webhook of this service uses:

- **Checkout**: ``create`` answers ``{checkout_url}``; the URL carries a token, an HMAC of the order
  number and amount under the sandbox key, so only the one who was given the URL can pay, and only
  that amount (the fulfilment still checks the amount against the order, as for any platform).
- **Notifications**: a JSON event signed per the Standard Webhooks specification (the
  ``standardwebhooks`` library: ``webhook-id`` = the event's id, ``webhook-timestamp``,
  ``webhook-signature``); one signed more than five minutes off is refused like a forged one.
  ``POST /api/v1/payments/sandbox/notify`` takes them.
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

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

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
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
PAID_EVENT = "TRANSACTION.SUCCESS"


def sandbox_key(jwt_secret: str) -> bytes:
    return hmac.new(jwt_secret.encode(), b"wardrobe payment sandbox v1", hashlib.sha256).digest()


class SandboxGateway:
    provider = PROVIDER

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._signer = Webhook(key)

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
        event_id = f"sbx_evt_{uuid.uuid4().hex}"
        body = json.dumps(
            {
                "id": event_id,
                "event_type": PAID_EVENT,
                "order_no": order_no,
                "transaction_id": f"sbx_txn_{uuid.uuid4().hex[:24]}",
                "amount_fen": amount_fen,
                "paid_at": datetime.fromtimestamp(at, UTC).isoformat(),
            },
            separators=(",", ":"),
        ).encode()
        return self.sign(event_id, body, at), body

    def sign(self, event_id: str, body: bytes, at: float) -> dict[str, str]:
        signature = self._signer.sign(event_id, datetime.fromtimestamp(at, UTC), body)
        return dict(zip(SIGNATURE_HEADERS, (event_id, str(int(at)), signature), strict=True))

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
        try:
            event = self._signer.verify(body, {name: headers.get(name, "") for name in SIGNATURE_HEADERS})
        except WebhookVerificationError as exc:  # also: signed more than five minutes off
            raise SignatureInvalid(str(exc)) from exc
        try:
            if event["id"] != headers.get("webhook-id"):
                raise ValueError("the event is not the one the id was signed with")
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
