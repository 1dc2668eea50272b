"""Orders and the quota ledger of a date range as CSV, for accounting.

The answer is streamed: rows are read in batches of ``BATCH_ROWS`` by keyset on the primary key
(between the first and last id of the range), each batch on a short session of its own, written
with the csv module into a small buffer and sent; the process holds one batch at a time however
long the range (bench/exports.py measures it). Phone numbers are never exported.

Each export is audited (``export.orders`` / ``export.ledger`` with the range) in a transaction of
its own that commits before the first byte is sent: the request's session is closed once
streaming starts, and an export must not go out unrecorded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.audit import add_audit
from wardrobe.core.db import unit_of_work
from wardrobe.modules.admin import repository
from wardrobe.modules.admin.ranges import DayRange
from wardrobe.modules.admin.repository import ExportSource

BATCH_ROWS = 1000

ORDER_HEADER = (
    "order_no",
    "user_id",
    "sku",
    "name",
    "channel",
    "status",
    "amount_fen",
    "refunded_fen",
    "created_at",
    "paid_at",
    "transaction_id",
)
LEDGER_HEADER = (
    "id",
    "user_id",
    "kind",
    "amount",
    "hold_delta",
    "balance_after",
    "held_after",
    "ref",
    "note",
    "actor_id",
    "created_at",
)
# Excel reads a CSV as UTF-8 (plan names are Chinese) only when it starts with the byte order mark.
BOM = "\ufeff"
# A spreadsheet runs a cell that starts with one of these as a formula (``=HYPERLINK(...)``, or
# ``@SUM`` / ``+cmd|...`` for DDE): text that users or operators wrote (a nickname-like plan name, a
# ledger note, a platform's transaction id) must never become code on accounting's machine, so
# such text gets a leading apostrophe, which spreadsheets read as "this is text" (OWASP's advice;
# tab and carriage return are on its list too). Numbers and times are ours and are left alone.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _order_line(row: Sequence[Any]) -> list[Any]:
    return [_cell(v) for v in row[1:]]  # the id is the keyset's, not a column of the file


def _ledger_line(row: Sequence[Any]) -> list[Any]:
    return [_cell(v) for v in row]


EXPORTS: dict[str, tuple[ExportSource, tuple[str, ...], Callable[[Sequence[Any]], list[Any]]]] = {
    "orders": (repository.ORDERS, ORDER_HEADER, _order_line),
    "ledger": (repository.LEDGER, LEDGER_HEADER, _ledger_line),
}


async def record_export(
    sessions: async_sessionmaker[AsyncSession], *, actor_id: int, what: str, span: DayRange
) -> None:
    """The audit record of an export, committed at once (before anything is streamed)."""
    async with unit_of_work(sessions) as session:
        add_audit(
            session,
            actor_id=actor_id,
            action=f"export.{what}",
            target_type="export",
            target_id=what,
            reason=None,
            after={"from": span.first.isoformat(), "to": span.last.isoformat()},
        )


def _encode(lines: list[list[Any]], prefix: str = "") -> bytes:
    buffer = io.StringIO()
    buffer.write(prefix)
    csv.writer(buffer, lineterminator="\r\n").writerows(lines)
    return buffer.getvalue().encode("utf-8")


async def stream_csv(
    sessions: async_sessionmaker[AsyncSession], what: str, span: DayRange, *, batch_rows: int = BATCH_ROWS
) -> AsyncIterator[bytes]:
    """The header, then one chunk per batch of rows created within ``span``, oldest first."""
    source, header, line = EXPORTS[what]
    yield _encode([list(header)], BOM)
    async with sessions() as session:
        bounds = await repository.id_bounds(session, source, span.since, span.until)
    if bounds is None:
        return
    after, last = bounds[0] - 1, bounds[1]
    while True:
        async with sessions() as session:
            rows = await repository.export_batch(
                session, source, span.since, span.until, after_id=after, last_id=last, limit=batch_rows
            )
        if rows:
            yield _encode([line(row) for row in rows])
            after = rows[-1][0]
        if len(rows) < batch_rows:
            return
