"""HTTP routes of /api/v1/admin/exports: orders and the quota ledger as CSV, streamed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import StreamingResponse

from wardrobe.core.deps import SessionFactory, SessionFactoryDep
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import Principal, require
from wardrobe.modules.admin import exports
from wardrobe.modules.admin.ranges import MAX_EXPORT_DAYS, FromDay, ToDay, day_range

router = APIRouter()
Exporter = Annotated[Principal, Depends(require(Permission.EXPORTS_READ))]


class CsvResponse(StreamingResponse):
    media_type = "text/csv"  # Starlette adds "; charset=utf-8" to text types


def _documented(columns: tuple[str, ...]) -> dict[int | str, dict[str, Any]]:
    csv_answer = {
        "description": "CSV (UTF-8 with a byte order mark, CRLF line ends), a header row first: " + ", ".join(columns),
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
    return {200: csv_answer, **errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED)}


_RANGE = (
    f"Rows created from the first to the last day given (UTC, both inclusive, at most {MAX_EXPORT_DAYS} days), "
    "oldest first. Streamed in batches, so any range is exported whole. Text that a spreadsheet would run as "
    "a formula (starting with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`. Each export is audited."
)


async def _export(actor: Principal, sessions: SessionFactory, what: str, first: str, last: str) -> CsvResponse:
    span = day_range(first, last)
    await exports.record_export(sessions, actor_id=actor.id, what=what, span=span)
    # Read from the module at call time: tests make batches small to cross their boundaries.
    body = exports.stream_csv(sessions, what, span, batch_rows=exports.BATCH_ROWS)
    filename = f"{what}-{span.first.isoformat()}-{span.last.isoformat()}.csv"
    return CsvResponse(body, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get(
    "/exports/orders.csv",
    summary="Orders of a date range as CSV (accounting)",
    description=_RANGE,
    response_class=CsvResponse,
    responses=_documented(exports.ORDER_HEADER),
)
async def export_orders(actor: Exporter, sessions: SessionFactoryDep, first: FromDay, last: ToDay) -> CsvResponse:
    return await _export(actor, sessions, "orders", first, last)


@router.get(
    "/exports/ledger.csv",
    summary="Quota ledger rows of a date range as CSV (accounting)",
    description=_RANGE,
    response_class=CsvResponse,
    responses=_documented(exports.LEDGER_HEADER),
)
async def export_ledger(actor: Exporter, sessions: SessionFactoryDep, first: FromDay, last: ToDay) -> CsvResponse:
    return await _export(actor, sessions, "ledger", first, last)
