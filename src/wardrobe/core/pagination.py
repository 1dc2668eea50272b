"""Opaque keyset cursors: the client passes back what it was given.

A cursor is ``id:<last id>`` in unpadded URL-safe base64. Clients treat it as opaque, but the
contract still says exactly which strings are cursors (``CURSOR_PATTERN``), so that a generated
client, a validator and the server agree: the server takes precisely the strings that match.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

from fastapi import Query

from wardrobe.core.errors import ValidationFailed

T = TypeVar("T")

# Ids in cursors have 1 to 18 digits: 10**18 rows is beyond any table here, and every 18-digit
# number fits a signed BIGINT (19 digits would not all fit).
MAX_CURSOR_ID = 10**18 - 1


def _cursor_pattern() -> str:
    """The base64 text of ``id:`` + a decimal of 1-18 digits without a leading zero.

    ``id:`` is three bytes, so it is always ``aWQ6``; then each three digits (bytes 0x30-0x39) are
    four characters: the first two carry the first digit (M, N or O, then D/T/j/z — O only with
    D or T, as 8 and 9 are 0x38, 0x39), the third the second digit's low bits (A E I … k), the
    fourth the third digit (w-z, 0-5). One digit left over is two characters (M/N/O then
    A/Q/g/w), two are three. A leading zero would be MD (three or more digits) or MA.
    """
    lead = "(?:M[DTjz]|N[DTjz]|O[DT])"
    lead_nonzero = "(?:M[Tjz]|N[DTjz]|O[DT])"
    middle, last = "[AEIMQUYcgk]", "[w-z0-5]"
    one, one_nonzero = "(?:M[AQgw]|N[AQgw]|O[AQ])", "(?:M[Qgw]|N[AQgw]|O[AQ])"
    group = f"{lead}{middle}{last}"
    tail = f"(?:{one}|{lead}{middle})"
    three_or_more = f"{lead_nonzero}{middle}{last}(?:(?:{group}){{0,4}}{tail}?|(?:{group}){{5}})"
    return f"^(?:aWQ6(?:{one_nonzero}|{lead_nonzero}{middle}|{three_or_more}))?$"


CURSOR_PATTERN = _cursor_pattern()
_CURSOR = re.compile(CURSOR_PATTERN)

# The `cursor` query parameter of every paged list: empty or absent is the first page. The
# pattern documents the rule; decode_cursor enforces it with the answer clients rely on.
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="`next_cursor` of the previous page; empty or absent for the first page",
        json_schema_extra={"pattern": CURSOR_PATTERN},
    ),
]


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    if not cursor or not _CURSOR.fullmatch(cursor):
        raise ValidationFailed("cursor", "is not a cursor this API gave out")
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    return int(raw.removeprefix("id:"))


def split_page(rows: Sequence[T], limit: int, key: Callable[[T], int]) -> tuple[list[T], str | None]:
    """Rows fetched with ``limit + 1`` → (the page, the cursor of the next page or None)."""
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1])) if len(rows) > limit else None
