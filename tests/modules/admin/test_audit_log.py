"""The audit log reader: filters, time bounds and pages newest first; and every admin write that
exists is found there with its reason and what it changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.realtime import live
from tests.fixtures.tasks import free_port, make_feature, step
from tests.modules.distributors.flows import ADMIN_APPLICATIONS, apply, reveal
from tests.modules.distributors.helpers import make_id_number
from tests.peers.wechatpay_fixtures import ServedWeChatPayPeer, WeChatPaySettings
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog
from wardrobe.seed import seed_plans

AUDIT = "/api/v1/admin/audit-logs"
USERS = "/api/v1/admin/users"


async def _all(api: Api, who: Session, limit: Any = 100, **filters: Any) -> list[dict[str, Any]]:
    """Every row the filters select, walking the pages."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": limit, **filters} | ({"cursor": cursor} if cursor else {})
        page = data(await api.client.get(AUDIT, params=params, headers=who.headers))
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def _actions(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["action"], r["target_id"]) for r in rows]


async def test_filters_time_bounds_and_pages_newest_first(api: Api) -> None:
    admin, operator = await login_as(api, "admin"), await login_as(api, "operator")
    one, two = (await sms_login(api.client)).user["id"], (await sms_login(api.client)).user["id"]
    for body in ({"status": "disabled", "reason": "spam"}, {"status": "active", "reason": "appeal"}):
        data(await api.client.patch(f"{USERS}/{one}", json=body, headers=operator.headers))
    adjust = {"delta": 5, "reason": "goodwill"}
    data(await api.client.post(f"{USERS}/{two}/quota-adjustments", json=adjust, headers=operator.headers))
    promote = {"role": "operator", "reason": "joins support"}
    data(await api.client.patch(f"{USERS}/{two}", json=promote, headers=admin.headers))

    newest_first = [
        ("user.role", str(two)),
        ("quota.adjust", str(two)),
        ("user.unban", str(one)),
        ("user.ban", str(one)),
    ]
    assert _actions(await _all(api, operator, limit=3)) == newest_first
    async with unit_of_work(api.infra.session_factory) as db:
        stored = list(await db.scalars(select(AuditLog).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())))
    first = (await _all(api, operator, limit=1))[0]
    assert first == {
        "id": stored[0].id,
        "actor_id": admin.user["id"],
        "action": "user.role",
        "target_type": "user",
        "target_id": str(two),
        "reason": "joins support",
        "before": {"role": "user"},
        "after": {"role": "operator"},
        "created_at": stored[0].created_at.isoformat(),
    }

    assert _actions(await _all(api, operator, action="user.ban")) == [("user.ban", str(one))]
    by_target = await _all(api, operator, target_type="user", target_id=str(one), limit=1)
    assert _actions(by_target) == newest_first[2:]
    assert _actions(await _all(api, operator, actor_id=admin.user["id"])) == newest_first[:1]
    assert _actions(await _all(api, operator, actor_id=operator.user["id"], limit=2)) == newest_first[1:]

    adjusted_at = stored[1].created_at
    assert _actions(await _all(api, operator, **{"from": adjusted_at.isoformat()})) == newest_first[:2]
    assert _actions(await _all(api, operator, to=adjusted_at.isoformat())) == newest_first[1:]
    in_china = adjusted_at.astimezone(timezone(timedelta(hours=8))).isoformat()
    assert _actions(await _all(api, operator, to=in_china)) == newest_first[1:]
    today, tomorrow = adjusted_at.date(), adjusted_at.date() + timedelta(days=1)
    assert len(await _all(api, operator, **{"from": today.isoformat(), "to": today.isoformat()})) == 4
    assert await _all(api, operator, **{"from": tomorrow.isoformat()}) == []

    for params in ({"from": "2026-02-30"}, {"to": "2026-12-01T25:00Z"}, {"from": "yesterday"}):
        resp = await api.client.get(AUDIT, params=params, headers=operator.headers)
        assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED"), resp.text
        assert resp.json()["data"][0]["field"] == next(iter(params))
    user = await sms_login(api.client)
    resp = await api.client.get(AUDIT, headers=user.headers)
    assert (resp.status_code, resp.json()["code"]) == (403, "PERMISSION_DENIED")


# -- Every admin write, in the log ------------------------------------------------------------


@pytest.fixture
async def shop(api_factory: Any, wechatpay_settings: WeChatPaySettings, tmp_path: Path) -> AsyncIterator[Api]:
    """An app paid through the WeChat Pay peer, whose distributors' ID numbers are sealed by a key
    file: every admin write there is can be made in it."""
    port = free_port()
    overrides = wechatpay_settings(port) | {"kms_backend": "local", "kms_local_key_file": tmp_path / "keys.json"}
    api: Api = await api_factory(**overrides)
    async with unit_of_work(api.infra.session_factory) as db:
        await seed_plans(db)
    async with live(api.app, port):
        yield api


async def _refunded_order(api: Api, peer: ServedWeChatPayPeer, admin: Session) -> str:
    buyer = await sms_login(api.client)
    body = {"sku": "pack-100", "channel": "wechat_native"}
    order = data(await api.client.post("/api/v1/billing/orders", json=body, headers=buyer.headers), 201)
    await peer.pay(order["order_no"]).wait_delivered()
    path = f"/api/v1/admin/orders/{order['order_no']}/refund"
    data(await api.client.post(path, json={"reason": "bought by mistake"}, headers=admin.headers), 201)
    number: str = order["order_no"]
    return number


async def _switched_feature(api: Api, admin: Session, operator: Session) -> None:
    await make_feature(
        api, admin, "audited", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    features = data(await api.client.get("/api/v1/admin/features", headers=operator.headers))
    feature_id = next(f["id"] for f in features if f["key"] == "audited")
    body = {"enabled": False, "reason": "vendor incident"}
    data(await api.client.post(f"/api/v1/admin/features/{feature_id}/switch", json=body, headers=operator.headers))


async def test_every_admin_write_is_in_the_log_with_its_reason_and_change(
    shop: Api, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    api = shop
    admin, operator = await login_as(api, "admin"), await login_as(api, "operator")
    target, applicant = await sms_login(api.client), await sms_login(api.client)
    uid = target.user["id"]
    start = data(await api.client.get("/api/v1/billing/quota", headers=target.headers))["balance"]

    adjust = {"delta": 7, "reason": "compensation"}
    data(await api.client.post(f"{USERS}/{uid}/quota-adjustments", json=adjust, headers=operator.headers))
    data(
        await api.client.patch(
            f"{USERS}/{uid}", json={"status": "disabled", "reason": "abuse"}, headers=operator.headers
        )
    )
    data(await api.client.patch(f"{USERS}/{uid}", json={"role": "operator", "reason": "hired"}, headers=admin.headers))
    order_no = await _refunded_order(api, wechatpay_peer, admin)
    await _switched_feature(api, admin, operator)
    application = await apply(api, applicant, make_id_number())
    path = f"{ADMIN_APPLICATIONS}/{application['id']}/approve"
    data(await api.client.post(path, json={"reason": "documents checked"}, headers=operator.headers))
    await reveal(api, admin, application["id"], "tax filing")

    logged = {r["action"]: r for r in await _all(api, operator, limit=7)}

    def change(action: str) -> tuple[Any, ...]:
        row = logged[action]
        return row["actor_id"], row["target_id"], row["reason"], row["before"], row["after"]

    assert change("quota.adjust")[:4] == (operator.user["id"], str(uid), "compensation", {"balance": start})
    assert change("quota.adjust")[4] | {"ledger_ref": "-"} == {"balance": start + 7, "delta": 7, "ledger_ref": "-"}
    assert change("user.ban") == (operator.user["id"], str(uid), "abuse", {"status": "active"}, {"status": "disabled"})
    assert (admin.user["id"], str(uid), "hired", {"role": "user"}, {"role": "operator"}) in [
        (r["actor_id"], r["target_id"], r["reason"], r["before"], r["after"])
        for r in await _all(api, operator, action="user.role")
    ]
    refund = change("order.refund")
    assert refund[:3] == (admin.user["id"], order_no, "bought by mistake")
    assert (refund[4]["amount_fen"], refund[4]["status"]) == (990, "processing")
    assert change("feature.disable") == (
        operator.user["id"],
        "audited",
        "vendor incident",
        {"enabled": True},
        {"enabled": False},
    )
    app_id = str(application["id"])
    assert change("distributor_application.approve") == (
        operator.user["id"],
        app_id,
        "documents checked",
        {"status": "pending"},
        {"status": "approved"},
    )
    # Revealing changes nothing: the record says who looked, when and why.
    assert change("distributor_application.reveal_id") == (admin.user["id"], app_id, "tax filing", None, None)
    assert _actions(await _all(api, operator, target_type="order", target_id=order_no)) == [("order.refund", order_no)]
