"""Opaque keyset cursors (A7): the client passes back what it was given."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import TypeVar

from wardrobe.core.errors import ValidationFailed
from wardrobe.core.schemas import MAX_ID

T = TypeVar("T")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        # Only the canonical decimals encode_cursor writes: int() alone would also take " 7",
        # "+7" or "7_0", and any size, which overflows the database driver.
        if kind != "id" or not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_ID:
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor", "is not a cursor this API gave out") from exc


def split_page(rows: Sequence[T], limit: int, key: Callable[[T], int]) -> tuple[list[T], str | None]:
    """Rows fetched with ``limit + 1`` → (the page, the cursor of the next page or None)."""
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1])) if len(rows) > limit else None
