"""Support finds a user by exact keys and sees everything about them: quota and membership, the
newest ledger rows, sessions, orders and tasks, the distributor application; phones masked, and a
fixed number of queries however long the user's history."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import give_quota
from tests.modules.admin.history import (
    add_application,
    add_ledger,
    add_orders,
    add_tasks,
    give_membership,
    statements,
)
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog, LedgerEntry

USERS = "/api/v1/admin/users"


def masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


async def test_find_users_by_exact_id_invite_code_and_status_never_by_part_of_a_phone(api: Api) -> None:
    operator = await login_as(api, "operator")
    a, b = await sms_login(api.client), await sms_login(api.client)

    resp = await api.client.get(USERS, params={"id": a.user["id"]}, headers=operator.headers)
    [row] = data(resp)["items"]
    assert (row["id"], row["phone_masked"], row["status"]) == (a.user["id"], masked(a.phone), "active")
    assert a.phone not in resp.text
    assert "phone" not in row
    assert set(row) >= {"nickname", "avatar_url", "role", "invite_code", "referrer_id", "created_at"}

    code = data(await api.client.get("/api/v1/users/me/invite", headers=b.headers))["invite_code"]
    found = data(await api.client.get(USERS, params={"invite_code": code.lower()}, headers=operator.headers))
    assert [u["id"] for u in found["items"]] == [b.user["id"]]
    assert found["items"][0]["invite_code"] == code

    ban = {"status": "disabled", "reason": "spam"}
    data(await api.client.patch(f"{USERS}/{b.user['id']}", json=ban, headers=operator.headers))
    disabled = data(await api.client.get(USERS, params={"status": "disabled"}, headers=operator.headers))
    assert [u["id"] for u in disabled["items"]] == [b.user["id"]]
    active = data(await api.client.get(USERS, params={"status": "active", "limit": 100}, headers=operator.headers))
    assert b.user["id"] not in {u["id"] for u in active["items"]}
    both = {"status": "active", "id": b.user["id"]}
    assert data(await api.client.get(USERS, params=both, headers=operator.headers))["items"] == []

    # A part of a phone number finds nobody: it is refused, never searched by prefix.
    for part in (a.phone[:7], a.phone[-4:]):
        resp = await api.client.get(USERS, params={"phone": part}, headers=operator.headers)
        assert (resp.status_code, resp.json()["data"][0]["field"]) == (422, "phone")
    resp = await api.client.get(USERS, params={"status": "gone"}, headers=operator.headers)
    assert resp.status_code == 422


async def _rich_user(api: Api) -> tuple[int, str, dict[str, int], list[str], int]:
    user = await sms_login(api.client)
    uid = user.user["id"]
    await give_quota(api, uid, 50)
    await add_ledger(api, uid, 30)
    orders = await add_orders(api, uid, 25)
    by_status = await add_tasks(api, uid, 23)
    application_id = await add_application(api, uid)
    await give_membership(api, uid)
    return uid, user.phone, by_status, orders, application_id


async def test_user_detail_shows_everything_with_the_phone_masked(api: Api) -> None:
    operator = await login_as(api, "operator")
    uid, phone, by_status, orders, application_id = await _rich_user(api)

    resp = await api.client.get(f"{USERS}/{uid}", headers=operator.headers)
    detail = data(resp)
    assert phone not in resp.text
    assert (detail["user"]["id"], detail["user"]["phone_masked"]) == (uid, masked(phone))

    async with unit_of_work(api.infra.session_factory) as db:
        ledger = list(await db.scalars(select(LedgerEntry).where(LedgerEntry.user_id == uid)))
    balance = sum(e.amount for e in ledger)
    assert detail["quota"] | {"membership": None} == {
        "balance": balance,
        "held": 0,
        "available": balance,
        "membership": None,
    }
    membership = detail["quota"]["membership"]
    assert (membership["sku"], membership["name"], membership["active"]) == ("member-monthly", "月度会员", True)

    newest = sorted(ledger, key=lambda e: e.id, reverse=True)[:20]
    assert [e["id"] for e in detail["ledger"]] == [e.id for e in newest]
    assert detail["ledger"][0] | {"created_at": None} == {
        "id": newest[0].id,
        "user_id": uid,
        "kind": newest[0].kind,
        "amount": newest[0].amount,
        "hold_delta": 0,
        "balance_after": newest[0].balance_after,
        "held_after": 0,
        "ref": newest[0].ref,
        "note": newest[0].note,
        "actor_id": None,
        "created_at": None,
    }

    assert [o["order_no"] for o in detail["orders"]] == orders[::-1][:20]
    assert detail["orders"][0]["amount_fen"] == 990 + 24

    tasks = detail["tasks"]
    assert (tasks["total"], tasks["by_status"]) == (23, by_status)
    assert len(tasks["recent"]) == 10
    finished = next(t for t in tasks["recent"] if t["status"] == "succeeded")
    assert (finished["providers"], finished["duration_ms"], finished["user_id"]) == (["local", "runninghub"], 1500, uid)
    assert detail["distributor"] == {"application_id": application_id, "status": "pending"}

    [login] = detail["sessions"]
    assert (login["ip_masked"], login["revoked_at"], login["method"]) == ("203.0.113.*", None, "sms")
    assert login["last_used_at"] == login["created_at"]
    async with unit_of_work(api.infra.session_factory) as db:  # reading is not audited
        assert await db.scalar(select(func.count()).select_from(AuditLog)) == 0


async def test_the_detail_costs_the_same_queries_for_a_long_history_as_for_a_short_one(api: Api) -> None:
    operator = await login_as(api, "operator")
    short = (await sms_login(api.client)).user["id"]
    await add_orders(api, short, 1)
    await add_tasks(api, short, 1)
    rich, *_ = await _rich_user(api)
    data(await api.client.get(f"{USERS}/{short}", headers=operator.headers))  # warms the caller's caches

    counts = []
    for uid in (short, rich, short):
        with statements(api.infra.engine) as seen:
            data(await api.client.get(f"{USERS}/{uid}", headers=operator.headers))
        counts.append(len(seen))
    assert counts[0] == counts[1] == counts[2], counts
    assert counts[1] <= 12, counts  # 9 for the detail, the rest the caller's authentication


async def test_a_users_ledger_pages_newest_first(api: Api) -> None:
    operator = await login_as(api, "operator")
    user = await sms_login(api.client)
    uid = user.user["id"]
    await add_ledger(api, uid, 12)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = data(await api.client.get(f"{USERS}/{uid}/ledger", params=params, headers=operator.headers))
        seen += [e["id"] for e in page["items"]]
        assert all(e["user_id"] == uid for e in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    async with unit_of_work(api.infra.session_factory) as db:
        ids = list(await db.scalars(select(LedgerEntry.id).where(LedgerEntry.user_id == uid)))
    assert seen == sorted(ids, reverse=True)
    assert len(seen) == 13

    for path in (f"{USERS}/987654", f"{USERS}/987654/ledger"):
        resp = await api.client.get(path, headers=operator.headers)
        assert (resp.status_code, resp.json()["code"]) == (404, "NOT_FOUND")
    resp = await api.client.get(f"{USERS}/{uid}/ledger", params={"cursor": "bogus!"}, headers=operator.headers)
    assert (resp.status_code, resp.json()["data"][0]["field"]) == (422, "cursor")
