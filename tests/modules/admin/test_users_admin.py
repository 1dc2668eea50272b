"""Admin user management: list with cursors, create, role/status changes, revocation, audit."""

from __future__ import annotations

from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, new_phone, sms_login
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog


async def test_list_users_pages_with_a_cursor_newest_first(api: Api) -> None:
    operator = await login_as(api, "operator")
    for _ in range(4):
        await sms_login(api.client)
    seen: list[int] = []
    cursor = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = data(await api.client.get("/api/v1/admin/users", params=params, headers=operator.headers))
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)
    for item in page["items"]:
        assert "phone" not in item
        assert "password_hash" not in item
    resp = await api.client.get("/api/v1/admin/users", params={"cursor": "bogus!"}, headers=operator.headers)
    assert (resp.status_code, resp.json()["data"][0]["field"]) == (422, "cursor")


async def test_filter_by_phone_and_role(api: Api) -> None:
    operator = await login_as(api, "operator")
    target = await sms_login(api.client)
    page = data(await api.client.get("/api/v1/admin/users", params={"phone": target.phone}, headers=operator.headers))
    assert [u["id"] for u in page["items"]] == [target.user["id"]]
    page = data(await api.client.get("/api/v1/admin/users", params={"role": "operator"}, headers=operator.headers))
    assert [u["role"] for u in page["items"]] == ["operator"]


async def test_create_user_then_password_login(api: Api) -> None:
    admin = await login_as(api, "admin")
    phone = new_phone()
    body = {"phone": phone, "password": "staff-pass-3", "role": "operator"}
    created = data(await api.client.post("/api/v1/admin/users", json=body, headers=admin.headers), 201)
    assert created["role"] == "operator"
    resp = await api.client.post("/api/v1/admin/users", json=body, headers=admin.headers)
    assert (resp.status_code, resp.json()["code"]) == (409, "CONFLICT")
    login = await api.client.post(
        "/api/v1/auth/login", json={"method": "password", "phone": phone, "password": "staff-pass-3"}
    )
    assert data(login)["user"]["role"] == "operator"


async def test_disabling_revokes_sessions_and_role_changes_apply_at_once(api: Api) -> None:
    admin = await login_as(api, "admin")
    target = await sms_login(api.client)
    uid = target.user["id"]
    updated = data(
        await api.client.patch(
            f"/api/v1/admin/users/{uid}",
            json={"role": "operator", "reason": "joins support"},
            headers=admin.headers,
        )
    )
    assert updated["role"] == "operator"
    # The role is read from the database on every request, not from the token.
    assert (await api.client.get("/api/v1/admin/users", headers=target.headers)).status_code == 200
    data(
        await api.client.patch(
            f"/api/v1/admin/users/{uid}",
            json={"status": "disabled", "reason": "abuse"},
            headers=admin.headers,
        )
    )
    resp = await api.client.get("/api/v1/users/me", headers=target.headers)
    assert resp.json()["code"] == "AUTH_SESSION_REVOKED"
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": target.phone})
    async with unit_of_work(api.infra.session_factory) as db:
        rows = list(await db.scalars(select(AuditLog).order_by(AuditLog.id)))
    assert [(a.action, a.before, a.after, a.reason) for a in rows] == [
        ("user.role", {"role": "user"}, {"role": "operator"}, "joins support"),
        ("user.ban", {"status": "active"}, {"status": "disabled"}, "abuse"),
    ]


async def test_operators_ban_and_unban_but_only_admins_change_roles(api: Api) -> None:
    operator = await login_as(api, "operator")
    target = await sms_login(api.client)
    uid = target.user["id"]
    resp = await api.client.patch(
        f"/api/v1/admin/users/{uid}", json={"role": "admin", "reason": "promote me"}, headers=operator.headers
    )
    assert (resp.status_code, resp.json()["code"]) == (403, "PERMISSION_DENIED")
    banned = data(
        await api.client.patch(
            f"/api/v1/admin/users/{uid}", json={"status": "disabled", "reason": "spam"}, headers=operator.headers
        )
    )
    assert (banned["status"], banned["role"]) == ("disabled", "user")
    resp = await api.client.get("/api/v1/users/me", headers=target.headers)
    assert resp.json()["code"] == "AUTH_SESSION_REVOKED"
    data(
        await api.client.patch(
            f"/api/v1/admin/users/{uid}", json={"status": "active", "reason": "appeal"}, headers=operator.headers
        )
    )
    async with unit_of_work(api.infra.session_factory) as db:
        actions = [a.action for a in await db.scalars(select(AuditLog).where(AuditLog.target_id == str(uid)))]
    assert actions == ["user.ban", "user.unban"]


async def test_admin_cannot_demote_or_disable_themself_or_touch_nobody(api: Api) -> None:
    admin = await login_as(api, "admin")
    me = admin.user["id"]
    for body in ({"role": "user", "reason": "oops"}, {"status": "disabled", "reason": "oops"}):
        resp = await api.client.patch(f"/api/v1/admin/users/{me}", json=body, headers=admin.headers)
        assert (resp.status_code, resp.json()["code"]) == (409, "CONFLICT")
    resp = await api.client.patch(
        "/api/v1/admin/users/987654", json={"role": "user", "reason": "x" * 3}, headers=admin.headers
    )
    assert (resp.status_code, resp.json()["code"]) == (404, "NOT_FOUND")
    resp = await api.client.patch(f"/api/v1/admin/users/{me}", json={"role": "user"}, headers=admin.headers)
    assert (resp.status_code, resp.json()["data"][0]["field"]) == (422, "reason")
