"""Passwords: set, change, reset, strength rules, back-off, no registration oracle."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import Api
from tests.fixtures.auth import data, new_phone, request_code, sms_login
from wardrobe.core.ratelimit import per_seconds


async def _password_login(api: Api, phone: str, password: str) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post(
        "/api/v1/auth/login", json={"method": "password", "phone": phone, "password": password}
    )
    return resp.status_code, resp.json()


async def test_set_then_login_with_password(api: Api) -> None:
    s = await sms_login(api.client)
    resp = await api.client.put("/api/v1/auth/password", json={"new_password": "tailor-made-42"}, headers=s.headers)
    assert data(resp)["other_sessions_revoked"] == 0
    status, body = await _password_login(api, s.phone, "tailor-made-42")
    assert status == 200, body
    assert body["data"]["is_new_user"] is False
    assert body["data"]["user"]["id"] == s.user["id"]


async def test_change_needs_the_old_password_and_revokes_other_sessions(api: Api) -> None:
    s = await sms_login(api.client)
    await api.client.put("/api/v1/auth/password", json={"new_password": "first-pass-1"}, headers=s.headers)
    _, other = await _password_login(api, s.phone, "first-pass-1")
    other_headers = {"Authorization": f"Bearer {other['data']['access_token']}"}

    resp = await api.client.put("/api/v1/auth/password", json={"new_password": "second-pass-2"}, headers=s.headers)
    assert (resp.status_code, resp.json()["code"]) == (401, "AUTH_INVALID_CREDENTIALS")
    resp = await api.client.put(
        "/api/v1/auth/password",
        json={"old_password": "wrong-pass-9", "new_password": "second-pass-2"},
        headers=s.headers,
    )
    assert resp.status_code == 401
    resp = await api.client.put(
        "/api/v1/auth/password",
        json={"old_password": "first-pass-1", "new_password": "second-pass-2"},
        headers=s.headers,
    )
    assert data(resp)["other_sessions_revoked"] == 1
    assert (await api.client.get("/api/v1/users/me", headers=other_headers)).json()["code"] == "AUTH_SESSION_REVOKED"
    assert (await api.client.get("/api/v1/users/me", headers=s.headers)).status_code == 200
    assert (await _password_login(api, s.phone, "first-pass-1"))[0] == 401
    assert (await _password_login(api, s.phone, "second-pass-2"))[0] == 200


async def test_weak_and_overlong_passwords_are_refused(api: Api) -> None:
    s = await sms_login(api.client)
    for bad in ["short1", "onlyletters", "1234567890", "password1", "aaaa1111", "x1" * 600]:
        resp = await api.client.put("/api/v1/auth/password", json={"new_password": bad}, headers=s.headers)
        assert resp.status_code == 422, bad
        assert resp.json()["data"][0]["field"] == "new_password", bad


async def test_reset_with_sms_code_revokes_every_session(api: Api) -> None:
    s = await sms_login(api.client)
    await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", s.phone)
    code = await request_code(api.client, s.phone, "reset_password")
    resp = await api.client.post(
        "/api/v1/auth/password/reset", json={"phone": s.phone, "code": code, "new_password": "brand-new-77"}
    )
    data(resp)
    assert (await api.client.get("/api/v1/users/me", headers=s.headers)).json()["code"] == "AUTH_SESSION_REVOKED"
    assert (await _password_login(api, s.phone, "brand-new-77"))[0] == 200


async def test_login_code_cannot_reset_a_password(api: Api) -> None:
    s = await sms_login(api.client)
    await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", s.phone)
    code = await request_code(api.client, s.phone, "login")
    resp = await api.client.post(
        "/api/v1/auth/password/reset", json={"phone": s.phone, "code": code, "new_password": "brand-new-77"}
    )
    assert (resp.status_code, resp.json()["code"]) == (400, "AUTH_CODE_INVALID")


async def test_reset_for_unregistered_phone_looks_like_a_wrong_code(api: Api) -> None:
    phone = new_phone()
    code = await request_code(api.client, phone, "reset_password")
    resp = await api.client.post(
        "/api/v1/auth/password/reset", json={"phone": phone, "code": code, "new_password": "brand-new-77"}
    )
    assert (resp.status_code, resp.json()["code"]) == (400, "AUTH_CODE_INVALID")


async def test_unknown_phone_and_wrong_password_answer_the_same(api: Api) -> None:
    s = await sms_login(api.client)
    await api.client.put("/api/v1/auth/password", json={"new_password": "right-pass-5"}, headers=s.headers)
    wrong_pw = await _password_login(api, s.phone, "wrong-pass-5")
    unknown = await _password_login(api, new_phone(), "wrong-pass-5")
    no_password = await _password_login(api, (await sms_login(api.client)).phone, "wrong-pass-5")
    for status, body in (wrong_pw, unknown, no_password):
        assert (status, body["code"], body["message"]) == (
            401,
            "AUTH_INVALID_CREDENTIALS",
            wrong_pw[1]["message"],
        )


async def test_failed_logins_back_off_even_for_the_right_password(api_factory: object) -> None:
    api: Api = await api_factory(login_failure_limits="3/minute;5/hour")  # type: ignore[operator]
    s = await sms_login(api.client)
    await api.client.put("/api/v1/auth/password", json={"new_password": "right-pass-5"}, headers=s.headers)
    results = await asyncio.gather(*(_password_login(api, s.phone, f"wrong-pass-{i}") for i in range(6)))
    codes = sorted(body["code"] for _, body in results)
    assert codes.count("AUTH_INVALID_CREDENTIALS") == 3
    assert codes.count("RATE_LIMITED") == 3
    resp = await api.client.post(
        "/api/v1/auth/login", json={"method": "password", "phone": s.phone, "password": "right-pass-5"}
    )
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1


def _from(api: Api, address: str) -> httpx.AsyncClient:
    """A client of the same running app seen from another address."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 41000))
    return httpx.AsyncClient(transport=transport, base_url="http://wardrobe.test")


async def test_a_strangers_failures_do_not_lock_the_owner_out(api_factory: object) -> None:
    """The back-off is kept per account *and* address: an attacker who fills it from one address
    leaves the owner free to log in from another, until the much higher per-account ceiling."""
    api: Api = await api_factory(  # type: ignore[operator]
        login_failure_limits="3/minute;5/hour", login_failure_limits_per_account="8/hour"
    )
    s = await sms_login(api.client)
    await api.client.put("/api/v1/auth/password", json={"new_password": "right-pass-5"}, headers=s.headers)
    attacker = [await _password_login(api, s.phone, f"wrong-pass-{i}") for i in range(5)]
    assert [body["code"] for _, body in attacker] == ["AUTH_INVALID_CREDENTIALS"] * 3 + ["RATE_LIMITED"] * 2

    owner_client = _from(api, "198.51.100.20")
    try:
        resp = await owner_client.post(
            "/api/v1/auth/login", json={"method": "password", "phone": s.phone, "password": "right-pass-5"}
        )
        assert resp.status_code == 200, resp.text
        # Attempts from every address count towards the ceiling (3 + 1 so far, of 8): four more
        # guesses from new addresses fill it, and then nobody gets in, the owner included.
        for i in range(4):
            other = _from(api, f"198.51.100.{30 + i}")
            try:
                status, body = await _password_login(Api(api.app, other, api.settings), s.phone, "wrong-pass-x")
            finally:
                await other.aclose()
            assert (status, body["code"]) == (401, "AUTH_INVALID_CREDENTIALS")
        resp = await owner_client.post(
            "/api/v1/auth/login", json={"method": "password", "phone": s.phone, "password": "right-pass-5"}
        )
        assert (resp.status_code, resp.json()["code"]) == (429, "RATE_LIMITED")
    finally:
        await owner_client.aclose()
