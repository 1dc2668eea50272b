"""Time ranges in admin queries: calendar days for the exports, instants for the audit log.

Both are taken as strings with a documented pattern and parsed here, rather than as ``date`` or
``datetime`` query parameters: pydantic's lax parsing would also take a Unix time ("1700000000")
and a time without a zone, which the contract does not promise. What the pattern lets through but
is no real date (2026-02-30), a reversed range or one that is too long is a 422 naming the field,
which the parameter documents under ``x-server-check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated

from fastapi import Query

from wardrobe.core.errors import ValidationFailed
from wardrobe.core.openapi import server_check

MAX_EXPORT_DAYS = 366
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# A date, or a date and time with an optional zone (Z or ±hh:mm; none means UTC).
INSTANT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)

_DAY_RULE = f"a real calendar date (UTC); `to` not before `from`, at most {MAX_EXPORT_DAYS} days in all"
_INSTANT_RULE = "a real date and time; a date alone is the start (`from`) or the end (`to`) of that UTC day"

FromDay = Annotated[
    str,
    Query(
        alias="from",
        pattern=DATE_PATTERN,
        description="First day, YYYY-MM-DD (UTC), inclusive",
        examples=["2026-12-01"],
        json_schema_extra=server_check(_DAY_RULE),
    ),
]
ToDay = Annotated[
    str,
    Query(
        alias="to",
        pattern=DATE_PATTERN,
        description="Last day, YYYY-MM-DD (UTC), inclusive",
        examples=["2026-12-31"],
        json_schema_extra=server_check(_DAY_RULE),
    ),
]
FromInstant = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=40,
        pattern=INSTANT_PATTERN,
        description="Only records at or after this time (ISO 8601; UTC unless a zone is given)",
        json_schema_extra=server_check(_INSTANT_RULE),
    ),
]
ToInstant = Annotated[
    str | None,
    Query(
        alias="to",
        max_length=40,
        pattern=INSTANT_PATTERN,
        description="Only records at or before this time (ISO 8601; UTC unless a zone is given)",
        json_schema_extra=server_check(_INSTANT_RULE),
    ),
]


@dataclass(frozen=True, slots=True)
class DayRange:
    first: date
    last: date

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, time.min, UTC)

    @property
    def until(self) -> datetime:
        """The last microsecond of the last day (the columns keep microseconds)."""
        return datetime.combine(self.last, time.max, UTC)


def _day(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(field, "is not a calendar date (YYYY-MM-DD)") from None


def day_range(first: str, last: str) -> DayRange:
    """``from`` and ``to`` of an export, both inclusive."""
    span = DayRange(_day(first, "from"), _day(last, "to"))
    if span.last < span.first:
        raise ValidationFailed("to", "must not be before from")
    if (span.last - span.first).days + 1 > MAX_EXPORT_DAYS:
        raise ValidationFailed("to", f"the range may span at most {MAX_EXPORT_DAYS} days")
    return span


def instant(text: str | None, field: str, *, end_of_day: bool) -> datetime | None:
    """An aware UTC time, or None for an absent or empty parameter."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        if len(text) == len("YYYY-MM-DD") and end_of_day:
            value = datetime.combine(value.date(), time.max)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):  # no such date, or beyond year 1..9999 once in UTC
        raise ValidationFailed(field, "is not a date and time this API can read") from None
