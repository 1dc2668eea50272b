"""Production holds admins to TOTP: staff routes answer an admin only in a session opened with a code."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as
from tests.fixtures.settings import production_settings
from tests.fixtures.totp import PinnedClock, bearer, enrol, password_login, set_password
from wardrobe.settings import Environment, Settings

STAFF_ROUTES = [
    ("GET", "/api/v1/admin/users"),  # operators may too
    ("POST", "/api/v1/admin/users"),  # admins only
    ("POST", "/api/v1/admin/distributors/applications/999999/reveal-id"),  # its own guard
]


async def _call(api: Api, headers: dict[str, str], method: str, path: str) -> tuple[int, str]:
    resp = await api.client.request(method, path, headers=headers, json={} if method == "POST" else None)
    return resp.status_code, resp.json()["code"]


async def _staff(api: Api, headers: dict[str, str]) -> list[tuple[int, str]]:
    return [await _call(api, headers, method, path) for method, path in STAFF_ROUTES]


async def test_production_admin_needs_a_session_opened_with_totp(api: Api, totp_clock: PinnedClock) -> None:
    admin = await login_as(api, "admin")
    await set_password(api.client, admin)
    operator = await login_as(api, "operator")
    api.settings.env = Environment.PRODUCTION  # read per request, like every setting of the routes

    assert await _staff(api, admin.headers) == [(403, "TOTP_ENROLMENT_REQUIRED")] * 3
    # What a plain user may do stays open to the admin, enrolment included.
    assert data(await api.client.get("/api/v1/users/me", headers=admin.headers))["totp_enabled"] is False
    assert (await api.client.get("/api/v1/billing/quota", headers=admin.headers)).status_code == 200
    # Operators are not held to it; what they may not do is still PERMISSION_DENIED.
    assert await _staff(api, operator.headers) == [(200, "OK"), (403, "PERMISSION_DENIED"), (403, "PERMISSION_DENIED")]

    secret = await enrol(api.client, admin, totp_clock)
    # Enabling TOTP in this session gave the password and a code: it now counts as a TOTP session.
    assert [status for status, _ in await _staff(api, admin.headers)] == [200, 422, 422]  # admitted: empty bodies

    totp_clock.advance()
    resp = await password_login(api.client, admin.phone, totp_code=totp_clock.code(secret))
    fresh = bearer(resp)
    assert (await _call(api, fresh, "GET", "/api/v1/admin/users"))[0] == 200
    # Refreshed tokens belong to the same session, still opened with TOTP.
    pair = data(await api.client.post("/api/v1/auth/refresh", json={"refresh_token": data(resp)["refresh_token"]}))
    refreshed = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await _call(api, refreshed, "GET", "/api/v1/admin/users"))[0] == 200


async def test_an_admin_session_without_totp_stays_held_after_enrolment_elsewhere(
    api: Api, totp_clock: PinnedClock
) -> None:
    """Sessions opened without a code before the admin enrolled are ended by enabling TOTP; an SMS
    login afterwards needs the code too, so no session without TOTP remains to be used."""
    admin = await login_as(api, "admin")
    await set_password(api.client, admin)
    api.settings.env = Environment.PRODUCTION
    earlier = bearer(await password_login(api.client, admin.phone))
    secret = await enrol(api.client, admin, totp_clock)
    assert (await _call(api, earlier, "GET", "/api/v1/admin/users")) == (401, "AUTH_SESSION_REVOKED")
    assert (await password_login(api.client, admin.phone)).json()["code"] == "TOTP_REQUIRED"
    totp_clock.advance()
    ok = await password_login(api.client, admin.phone, totp_code=totp_clock.code(secret))
    assert (await _call(api, bearer(ok), "GET", "/api/v1/admin/users"))[0] == 200


async def test_the_rule_is_a_setting(api: Api) -> None:
    admin: Session = await login_as(api, "admin")
    assert (await _call(api, admin.headers, "GET", "/api/v1/admin/users"))[0] == 200  # not production
    api.settings.admin_totp_required = True
    assert await _call(api, admin.headers, "GET", "/api/v1/admin/users") == (403, "TOTP_ENROLMENT_REQUIRED")
    api.settings.env = Environment.PRODUCTION
    api.settings.admin_totp_required = False
    assert (await _call(api, admin.headers, "GET", "/api/v1/admin/users"))[0] == 200


def test_admin_totp_is_required_by_default_in_production_only() -> None:
    real: dict[str, Any] = {"env": "production", **production_settings()}
    assert Settings(_env_file=None).admin_totp_enforced is False
    assert Settings(_env_file=None, admin_totp_required=True).admin_totp_enforced is True
    production = Settings(_env_file=None, **real)
    assert production.admin_totp_enforced is True
    assert not any("ADMIN_TOTP" in w for w in production.production_warnings())
    relaxed = Settings(_env_file=None, admin_totp_required=False, **real)
    assert relaxed.admin_totp_enforced is False
    assert any("WARDROBE_ADMIN_TOTP_REQUIRED=false" in w for w in relaxed.production_warnings())


async def test_the_contract_documents_the_rule_on_staff_routes(api: Api) -> None:
    paths = api.app.openapi()["paths"]

    def codes_403(method: str, path: str) -> list[str]:
        response = paths[path][method]["responses"].get("403", {})
        enum: list[str] = response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]["enum"]
        return enum

    assert "TOTP_ENROLMENT_REQUIRED" in codes_403("get", "/api/v1/admin/users")
    assert "TOTP_ENROLMENT_REQUIRED" in codes_403(
        "post", "/api/v1/admin/distributors/applications/{application_id}/reveal-id"
    )
    assert "TOTP_ENROLMENT_REQUIRED" not in codes_403("get", "/api/v1/users/me")
    assert "TOTP_ENROLMENT_REQUIRED" not in codes_403("post", "/api/v1/auth/totp/setup")
    login = paths["/api/v1/auth/login"]["post"]["responses"]["401"]["content"]["application/json"]["schema"]
    assert {"TOTP_REQUIRED", "TOTP_INVALID"} <= set(login["allOf"][1]["properties"]["code"]["enum"])
