"""A copy of the account's data: complete however long its lists, read in pages, JSON in the
envelope, nothing of other people and no secrets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import give_quota, internal_id, make_feature, step
from tests.modules.account.erasure_flows import create
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuthSession, LedgerEntry, Order
from wardrobe.models.base import utcnow
from wardrobe.modules.account import export


async def _export(api: Api, headers: dict[str, str]) -> Any:
    resp = await api.client.get("/api/v1/users/me/export", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-disposition"] == 'attachment; filename="wardrobe-export.json"'
    body = orjson.loads(resp.content)
    assert (body["success"], body["code"]) == (True, "OK")
    return body["data"]


async def test_the_export_holds_every_row_of_every_list(api_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "PAGE", 3)  # many pages from few rows
    api: Api = await api_factory(worker_in_process=True)
    admin = await login_as(api, "admin")
    await make_feature(
        api, admin, "quick", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    user = await sms_login(api.client)
    invite = data(await api.client.get("/api/v1/users/me/invite", headers=user.headers))["invite_code"]
    invited = await sms_login(api.client, invite_code=invite)
    data(await api.client.patch("/api/v1/users/me", json={"nickname": "Lin", "bio": "hi"}, headers=user.headers))
    await give_quota(api, user.user["id"], 20)
    created = [await create(api, user, "quick", {"key": f"prompt {i}"}) for i in range(7)]
    for task in created:
        await api.infra.runtime.wait_finished(await internal_id(api, task["id"]), 30)
    deleted = created[2]["id"]
    data(await api.client.delete(f"/api/v1/tasks/{deleted}", headers=user.headers))
    async with unit_of_work(api.infra.session_factory) as db:
        db.add(
            Order(
                order_no="W2026120500001",
                user_id=user.user["id"],
                sku="pack_100",
                kind="quota_pack",
                name="100 credits",
                quota=100,
                channel="alipay_qr",
                amount_fen=990,
                expires_at=utcnow() + timedelta(minutes=30),
            )
        )

    exported = await _export(api, user.headers)
    assert exported["profile"]["id"] == user.user["id"]
    assert exported["profile"]["nickname"] == "Lin"
    assert exported["profile"]["phone_masked"] == user.user["phone_masked"]
    assert user.phone not in orjson.dumps(exported).decode()
    tasks = exported["tasks"]
    assert [t["id"] for t in tasks] == [t["id"] for t in reversed(created) if t["id"] != deleted]
    assert [t["inputs"]["key"] for t in tasks] == [f"prompt {i}" for i in (6, 5, 4, 3, 1, 0)]
    assert {t["status"] for t in tasks} == {"succeeded"}
    async with unit_of_work(api.infra.session_factory) as db:
        ledger_ids = list(
            await db.scalars(
                select(LedgerEntry.id).where(LedgerEntry.user_id == user.user["id"]).order_by(LedgerEntry.id.desc())
            )
        )
        sessions = await db.scalar(
            select(func.count()).select_from(AuthSession).where(AuthSession.user_id == user.user["id"])
        )
    assert len(ledger_ids) > 2 * export.PAGE
    assert [entry["id"] for entry in exported["ledger"]] == ledger_ids
    assert len(exported["sessions"]) == sessions == 1
    assert [o["order_no"] for o in exported["orders"]] == ["W2026120500001"]
    assert exported["invitations"]["invite_code"] == invite
    assert exported["invitations"]["invited_count"] == 1
    # The invitee is another person: a date and a reward state, never who.
    assert [set(item) for item in exported["invitations"]["invited"]] == [{"created_at", "reward_status"}]
    assert invited.phone[-4:] not in orjson.dumps(exported["invitations"]).decode()
    quota = data(await api.client.get("/api/v1/billing/quota", headers=user.headers))
    assert (exported["quota"]["balance"], exported["quota"]["held"]) == (quota["balance"], 0)
    everything = orjson.dumps(exported).decode()
    assert user.refresh not in everything
    assert user.access not in everything


async def test_an_export_of_an_account_with_many_sessions_pages_through_them(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "PAGE", 2)
    user = await sms_login(api.client)
    async with unit_of_work(api.infra.session_factory) as db:
        same_time = utcnow() - timedelta(days=1)
        # Several sessions created at the same instant: pages must still neither skip nor repeat.
        db.add_all(
            AuthSession(id=f"s{i:031d}", user_id=user.user["id"], method="sms", created_at=same_time) for i in range(5)
        )
    exported = await _export(api, user.headers)
    ids = [s["id"] for s in exported["sessions"]]
    assert len(ids) == len(set(ids)) == 6


async def test_exports_are_limited_per_hour(api: Api) -> None:
    from wardrobe.modules.account.endpoints import EXPORT_LIMIT

    user = await sms_login(api.client)
    for _ in range(EXPORT_LIMIT):
        await _export(api, user.headers)
    resp = await api.client.get("/api/v1/users/me/export", headers=user.headers)
    assert (resp.status_code, resp.json()["code"]) == (429, "RATE_LIMITED")
