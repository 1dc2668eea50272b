"""CSV exports for accounting: exactly the rows created in the range (both days inclusive, UTC),
streamed in batches whose boundaries lose or repeat nothing, safe to open in a spreadsheet, no
phone numbers, each export audited, and a bad range refused in the usual envelope."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.modules.admin.history import add_ledger, add_orders, statements
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog, LedgerEntry, Order
from wardrobe.modules.admin import exports

EXPORTS = "/api/v1/admin/exports"
DAY = datetime(2025, 3, 10, tzinfo=UTC)
RANGE = {"from": "2025-03-10", "to": "2025-03-11"}
# Inside the range: its first and its last microsecond; outside: one microsecond either side.
INSIDE = (DAY, DAY + timedelta(days=2, microseconds=-1), DAY + timedelta(hours=12))
OUTSIDE = (DAY - timedelta(microseconds=1), DAY + timedelta(days=2))


def _parse(resp: httpx.Response) -> list[list[str]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.content.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"), newline="")))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if isinstance(value, str) and text[:1] in ("=", "+", "-", "@") else text


async def _date_rows(api: Api, model: Any, ids: list[int], moments: tuple[datetime, ...]) -> None:
    async with unit_of_work(api.infra.session_factory) as db:
        for n, row_id in enumerate(ids):
            at = moments[n % len(moments)]
            await db.execute(update(model).where(model.id == row_id).values(created_at=at))


async def _ledger_ids(api: Api, user_id: int) -> list[int]:
    async with unit_of_work(api.infra.session_factory) as db:
        return list(await db.scalars(select(LedgerEntry.id).where(LedgerEntry.user_id == user_id)))


async def _export(api: Api, who: Session, what: str, params: dict[str, str]) -> httpx.Response:
    return await api.client.get(f"{EXPORTS}/{what}.csv", params=params, headers=who.headers)


async def test_the_ledger_export_is_exactly_the_rows_in_range_across_batches(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "BATCH_ROWS", 3)
    operator = await login_as(api, "operator")
    user = await sms_login(api.client)
    uid = user.user["id"]
    await add_ledger(api, uid, 9)
    adjust = {"delta": -2, "reason": '=HYPERLINK("http://x")'}
    data(await api.client.post(f"/api/v1/admin/users/{uid}/quota-adjustments", json=adjust, headers=operator.headers))
    ids = await _ledger_ids(api, uid)  # 11: the sign-up grant, 9 grants, the adjustment
    inside, outside = ids[:7] + ids[-1:], ids[7:-1]  # 8 inside: batches of 3, 3 and 2
    await _date_rows(api, LedgerEntry, inside, INSIDE)
    await _date_rows(api, LedgerEntry, outside, OUTSIDE)

    with statements(api.infra.engine) as seen:
        rows = _parse(await _export(api, operator, "ledger", RANGE))
    assert rows[0] == list(exports.LEDGER_HEADER)
    async with unit_of_work(api.infra.session_factory) as db:
        expected = (
            await db.execute(
                select(*(getattr(LedgerEntry, c) for c in exports.LEDGER_HEADER))
                .where(LedgerEntry.id.in_(inside))
                .order_by(LedgerEntry.id)
            )
        ).all()
    assert rows[1:] == [[_text(v) for v in row] for row in expected]
    assert len(rows) == 9
    batches = [s for s in seen if "quota_ledger" in s and "LIMIT" in s.upper()]
    assert len(batches) == 3, batches

    # The adjustment's note (an operator's reason) would run as a formula; its amount is a number.
    moved = next(r for r in rows[1:] if r[2] == "admin_adjustment")
    assert (moved[3], moved[8]) == ("-2", '\'=HYPERLINK("http://x")')
    assert user.phone not in "".join(",".join(r) for r in rows)

    async with unit_of_work(api.infra.session_factory) as db:
        audit = (await db.scalars(select(AuditLog).where(AuditLog.action == "export.ledger"))).one()
    assert (audit.actor_id, audit.target_type, audit.after) == (
        operator.user["id"],
        "export",
        {"from": "2025-03-10", "to": "2025-03-11"},
    )


async def test_the_orders_export_is_exactly_the_orders_in_range(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "BATCH_ROWS", 2)
    admin = await login_as(api, "admin")
    buyer = (await sms_login(api.client)).user["id"]
    inside = await add_orders(api, buyer, 5)
    odd = await add_orders(api, buyer, 1, name="@SUM(A1:A9)", transaction_id="+4200", status="refunded")
    outside = await add_orders(api, buyer, 2)
    async with unit_of_work(api.infra.session_factory) as db:
        by_no = dict((await db.execute(select(Order.order_no, Order.id))).all())
    await _date_rows(api, Order, [by_no[n] for n in inside + odd], INSIDE)
    await _date_rows(api, Order, [by_no[n] for n in outside], OUTSIDE)

    rows = _parse(await _export(api, admin, "orders", RANGE))
    assert rows[0] == list(exports.ORDER_HEADER)
    assert [r[0] for r in rows[1:]] == inside + odd  # oldest first (by id)
    async with unit_of_work(api.infra.session_factory) as db:
        first = (await db.scalars(select(Order).where(Order.order_no == inside[0]))).one()
    assert rows[1] == [
        first.order_no,
        str(buyer),
        "pack-100",
        "100 次加油包",
        "wechat_native",
        "fulfilled",
        "990",
        "0",
        first.created_at.isoformat(),
        first.paid_at.isoformat() if first.paid_at else "",
        "4200000000",
    ]
    assert (rows[-1][3], rows[-1][5], rows[-1][10]) == ("'@SUM(A1:A9)", "refunded", "'+4200")

    empty = _parse(await _export(api, admin, "orders", {"from": "2024-01-01", "to": "2024-12-31"}))
    assert empty == [list(exports.ORDER_HEADER)]


async def test_a_bad_range_is_a_422_envelope_and_is_not_audited(api: Api) -> None:
    operator = await login_as(api, "operator")
    cases = [
        ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days
        ({"from": "2026-02-30", "to": "2026-03-01"}, "from"),
        ({"from": "2026/03/01", "to": "2026-03-01"}, "from"),
        ({"to": "2026-03-01"}, "from"),
    ]
    for what in ("orders", "ledger"):
        for params, field in cases:
            resp = await _export(api, operator, what, params)
            body = resp.json()
            assert (resp.status_code, body["success"], body["code"]) == (422, False, "VALIDATION_FAILED"), params
            assert body["data"][0]["field"] == field, (params, body)
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(func.count()).select_from(AuditLog)) == 0
    # 366 days, a leap year whole, is allowed.
    assert _parse(await _export(api, operator, "ledger", {"from": "2024-01-01", "to": "2024-12-31"}))[1:] == []
    user = await sms_login(api.client)
    resp = await _export(api, user, "ledger", RANGE)
    assert (resp.status_code, resp.json()["code"]) == (403, "PERMISSION_DENIED")
