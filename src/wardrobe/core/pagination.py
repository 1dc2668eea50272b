"""Opaque keyset cursors (A7): the client passes back what it was given."""

from __future__ import annotations

import base64

from wardrobe.core.errors import ValidationFailed


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "id":
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor", "is not a cursor this API gave out") from exc
