"""Each endpoint's signing secret, derived rather than stored: a database read alone signs nothing,
and rotating ``WARDROBE_WEBHOOK_SECRET_KEY`` changes every secret at once (owners then read theirs
again with ``POST /api/v1/webhooks/{id}/secret``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from standardwebhooks import Webhook

PREFIX = "whsec_"


def new_salt() -> str:
    return secrets.token_hex(16)


def endpoint_secret(key: str, endpoint_id: int, salt: str) -> str:
    """``whsec_`` + base64 of 32 bytes: the form Standard Webhooks libraries take."""
    raw = hmac.new(key.encode(), f"webhook:{endpoint_id}:{salt}".encode(), hashlib.sha256).digest()
    return PREFIX + base64.b64encode(raw).decode()


def signer(key: str, endpoint_id: int, salt: str) -> Webhook:
    return Webhook(endpoint_secret(key, endpoint_id, salt))
