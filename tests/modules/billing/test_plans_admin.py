"""Admins decide what is sold through /api/v1/admin/plans (audited, validated field by field);
clients see only what is on sale now, from each process's cache, which every edit drops on every
process at once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import Api
from tests.fixtures.auth import data, login_as
from tests.modules.billing.plan_helpers import create, membership, on_sale, pack, patch
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog, Plan
from wardrobe.models.base import utcnow


async def _trail(api: Api, sku: str) -> list[tuple[str, int | None, str | None, Any, Any]]:
    async with unit_of_work(api.infra.session_factory) as db:
        rows = await db.execute(
            select(AuditLog.action, AuditLog.actor_id, AuditLog.reason, AuditLog.before, AuditLog.after)
            .where(AuditLog.target_type == "plan", AuditLog.target_id == sku)
            .order_by(AuditLog.id)
        )
        return [tuple(r) for r in rows]


async def test_an_admin_creates_and_changes_plans_with_their_audit_trail(api: Api) -> None:
    admin, operator = await login_as(api, "admin"), await login_as(api, "operator")
    created = await create(api, admin, membership(features=[], channels=["wechat_jsapi", "wechat_jsapi"]))
    assert created["sku"] == "vip-month"
    assert (created["kind"], created["price_fen"], created["quota"], created["period_days"]) == (
        "membership",
        2990,
        300,
        30,
    )
    assert (created["tier"], created["features"], created["channels"]) == ("vip", [], ["wechat_jsapi"])
    assert (created["is_active"], created["valid_from"], created["valid_to"]) == (True, None, None)
    await create(api, admin, pack(sort_order=-5, reason="launch"))

    listed = data(await api.client.get("/api/v1/admin/plans", headers=operator.headers))
    assert [p["sku"] for p in listed] == ["pack-50", "vip-month"]  # sort_order, then sku

    changed = await patch(
        api, admin, "vip-month", price_fen=1990, valid_to="2099-01-01T00:00:00+08:00", reason="new year price"
    )
    assert (changed["price_fen"], changed["quota"], changed["valid_to"]) == (1990, 300, "2098-12-31T16:00:00+00:00")
    assert changed["updated_at"] >= created["updated_at"]
    # The same values again: nothing changes, nothing is recorded.
    await patch(api, admin, "vip-month", price_fen=1990, reason="again")
    cleared = await patch(api, admin, "vip-month", valid_to=None, name_en=None, reason="no end")
    assert (cleared["valid_to"], cleared["name_en"]) == (None, None)

    trail = await _trail(api, "vip-month")
    assert [t[0] for t in trail] == ["plan.create", "plan.update", "plan.update"]
    assert trail[0][1] == admin.user["id"]
    assert trail[0][3] is None
    assert trail[0][4]["price_fen"] == 2990
    assert trail[1][2:] == (
        "new year price",
        {"price_fen": 2990, "valid_to": None},
        {"price_fen": 1990, "valid_to": "2098-12-31T16:00:00+00:00"},
    )
    assert trail[2][2:] == (
        "no end",
        {"name_en": "Monthly membership", "valid_to": "2098-12-31T16:00:00+00:00"},
        {"name_en": None, "valid_to": None},
    )
    assert (await _trail(api, "pack-50"))[0][:3] == ("plan.create", admin.user["id"], "launch")

    duplicate = await api.client.post("/api/v1/admin/plans", json=pack(), headers=admin.headers)
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "CONFLICT")
    ghost = await api.client.patch("/api/v1/admin/plans/no-such", json={"reason": "xx"}, headers=admin.headers)
    assert (ghost.status_code, ghost.json()["code"]) == (404, "NOT_FOUND")
    refused = await api.client.patch(
        "/api/v1/admin/plans/pack-50", json={"price_fen": 1, "reason": "xx"}, headers=operator.headers
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "PERMISSION_DENIED")


POST_REFUSALS: list[tuple[dict[str, Any], str]] = [
    (membership(period_days=None), "period_days"),
    (pack(period_days=30), "period_days"),
    (pack(price_fen=0), "price_fen"),
    (pack(price_fen=10_000_001), "price_fen"),
    (pack(quota=-1), "quota"),
    (pack(quota=1_000_001), "quota"),
    (pack(sku="Pack-50"), "sku"),
    (pack(sku="p"), "sku"),
    (pack(sku="-pack"), "sku"),
    (pack(kind="subscription"), "kind"),
    (pack(name=" "), "name"),
    (pack(channels=["paypal"]), "channels.0"),
    (pack(valid_from="2027-02-01T00:00:00Z", valid_to="2027-01-01T00:00:00Z"), "valid_to"),
    (pack(valid_from="2027-01-01T00:00:00Z", valid_to="2027-01-01T00:00:00Z"), "valid_to"),
    (pack(valid_from="2027-01-01T00:00:00"), "valid_from"),  # no zone
    (pack(valid_from=1798761600), "valid_from"),
    (pack(valid_to="1999-12-31T00:00:00Z"), "valid_to"),
    (membership(features=["no_such_feature"]), "features"),
    (membership(tier="VIP!"), "tier"),
    (pack(id=3), "id"),
]


async def test_an_invalid_plan_is_refused_naming_the_field(api: Api) -> None:
    admin = await login_as(api, "admin")
    for body, field in POST_REFUSALS:
        resp = await api.client.post("/api/v1/admin/plans", json=body, headers=admin.headers)
        assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED"), (body, resp.text)
        assert field in [p["field"] for p in resp.json()["data"]], (body, resp.text)
    assert data(await api.client.get("/api/v1/admin/plans", headers=admin.headers)) == []


async def test_a_change_is_checked_against_the_whole_plan(api: Api) -> None:
    admin = await login_as(api, "admin")
    await create(api, admin, membership(valid_from="2027-01-01T00:00:00Z"))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"price_fen": 5}, "reason"),  # a change needs a reason
        ({"name": None, "reason": "xx"}, "name"),  # omit a field to keep it; null is not a value
        ({"features": None, "reason": "xx"}, "features"),
        ({"kind": "quota_pack", "reason": "xx"}, "period_days"),  # a pack has no period
        ({"period_days": None, "reason": "xx"}, "period_days"),  # a membership needs one
        ({"valid_to": "2026-12-31T00:00:00Z", "reason": "xx"}, "valid_to"),  # before valid_from
        ({"sku": "vip-2", "reason": "xx"}, "sku"),  # the sku never changes
        ({"reason": "x"}, "reason"),
    ]
    for body, field in cases:
        resp = await api.client.patch("/api/v1/admin/plans/vip-month", json=body, headers=admin.headers)
        assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED"), (body, resp.text)
        assert field in [p["field"] for p in resp.json()["data"]], (body, resp.text)
    turned = await patch(api, admin, "vip-month", kind="quota_pack", period_days=None, tier=None)
    assert (turned["kind"], turned["period_days"], turned["tier"]) == ("quota_pack", None, None)
    assert [t[0] for t in await _trail(api, "vip-month")] == ["plan.create", "plan.update"]


async def test_clients_see_only_what_is_on_sale_now(api: Api) -> None:
    admin = await login_as(api, "admin")
    now = utcnow()
    await create(api, admin, membership(channels=["wechat_jsapi"]))
    await create(api, admin, pack("pack-off", is_active=False))
    await create(api, admin, pack("pack-soon", valid_from=(now + timedelta(days=1)).isoformat()))
    await create(api, admin, pack("pack-over", valid_to=(now - timedelta(seconds=1)).isoformat()))
    await create(
        api,
        admin,
        pack(
            "pack-now",
            valid_from=(now - timedelta(days=1)).isoformat(),
            valid_to=(now + timedelta(days=1)).isoformat(),
            sort_order=-1,
        ),
    )
    sale = await on_sale(api)
    assert list(sale) == ["pack-now", "vip-month"]
    assert sale["vip-month"] == {
        "sku": "vip-month",
        "kind": "membership",
        "name": "月卡会员",
        "name_en": "Monthly membership",
        "price_fen": 2990,
        "quota": 300,
        "period_days": 30,
        "tier": "vip",
        "channels": ["wechat_jsapi"],
    }
    assert (sale["pack-now"]["name_en"], sale["pack-now"]["tier"], sale["pack-now"]["channels"]) == (None, None, [])

    await patch(api, admin, "vip-month", is_active=False)
    await patch(api, admin, "pack-off", is_active=True, price_fen=1290)
    sale = await on_sale(api)
    assert list(sale) == ["pack-now", "pack-off"]
    assert sale["pack-off"]["price_fen"] == 1290


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_plan_edit_reaches_every_process_at_once(api_factory: Any) -> None:
    a: Api = await api_factory()
    b: Api = await api_factory()
    admin = await login_as(a, "admin")
    await create(a, admin, pack())
    await b.infra.cache.wait_received(1)
    assert (await on_sale(b))["pack-50"]["price_fen"] == 990

    # Changed behind the service's back: B keeps serving what it cached (the cache is in use).
    async with unit_of_work(b.infra.session_factory) as db:
        await db.execute(update(Plan).where(Plan.sku == "pack-50").values(price_fen=1))
    assert (await on_sale(b))["pack-50"]["price_fen"] == 990

    received = b.infra.cache.received
    await patch(a, admin, "pack-50", price_fen=1490)
    await b.infra.cache.wait_received(received + 1)
    assert (await on_sale(b))["pack-50"]["price_fen"] == 1490

    received = b.infra.cache.received
    await patch(a, admin, "pack-50", is_active=False)
    await b.infra.cache.wait_received(received + 1)
    assert await on_sale(b) == {}
