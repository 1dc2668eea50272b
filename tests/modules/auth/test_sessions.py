"""Login sessions end (absolute lifetime and idle limit), and their owner sees and ends them;
new passwords are checked against what guessers try first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tests.conftest import Api
from tests.fixtures.auth import Session, data, new_phone, sms_login
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuthSession, RefreshToken
from wardrobe.models.base import utcnow

PASSWORD = "quiet-Harbor-81"
PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN miniProgram/wx0123456789"
)
DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
)


def _client(api: Api, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api.app, client=(address, 42000))
    return httpx.AsyncClient(transport=transport, base_url="http://wardrobe.test")


async def _refresh(api: Api, refresh_token: str) -> httpx.Response:
    return await api.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def _age(api: Api, user: Session, *, days: float) -> None:
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user.user["id"])
            .values(created_at=utcnow() - timedelta(days=days))
        )


async def test_no_session_outlives_its_absolute_lifetime(api_factory: Any) -> None:
    api: Api = await api_factory(session_max_days=30)
    young, old = await sms_login(api.client), await sms_login(api.client)
    await _age(api, young, days=29)
    await _age(api, old, days=30.01)
    # Refreshed every day, the young one still goes on; the old one is over.
    data(await _refresh(api, young.refresh))
    resp = await _refresh(api, old.refresh)
    assert (resp.status_code, resp.json()["code"]) == (401, "AUTH_SESSION_EXPIRED")


async def test_an_idle_session_is_over_too(api: Api) -> None:
    user = await sms_login(api.client)
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    resp = await _refresh(api, user.refresh)
    assert (resp.status_code, resp.json()["code"]) == (401, "AUTH_SESSION_EXPIRED")


async def test_an_owner_sees_their_devices_and_logs_one_out(api: Api) -> None:
    phone = new_phone()
    first = _client(api, "203.0.113.45")
    second = _client(api, "2001:db8:1234:5678::9")
    try:
        code = data(await first.post("/api/v1/auth/sms-codes", json={"phone": phone}))["debug_code"]
        login = {"method": "sms", "phone": phone, "code": code}
        on_phone = data(await first.post("/api/v1/auth/login", json=login, headers={"User-Agent": PHONE_UA}))
        phone_headers = {"Authorization": f"Bearer {on_phone['access_token']}"}
        data(await first.put("/api/v1/auth/password", json={"new_password": PASSWORD}, headers=phone_headers))
        by_password = {"method": "password", "phone": phone, "password": PASSWORD}
        on_desktop = data(await second.post("/api/v1/auth/login", json=by_password, headers={"User-Agent": DESKTOP_UA}))
        desktop_headers = {"Authorization": f"Bearer {on_desktop['access_token']}"}

        listed = data(await first.get("/api/v1/auth/sessions", headers=phone_headers))
        assert [(s["device"], s["ip_masked"], s["method"], s["current"]) for s in listed] == [
            ("Chrome on Windows", "2001:db8:1234::/48", "password", False),
            ("WeChat mini program on iOS (iPhone)", "203.0.113.*", "sms", True),
        ]
        assert all(s["expires_at"] > s["created_at"] for s in listed)
        desktop_id = listed[0]["id"]

        stranger = await sms_login(api.client)
        resp = await api.client.delete(f"/api/v1/auth/sessions/{desktop_id}", headers=stranger.headers)
        assert (resp.status_code, resp.json()["code"]) == (404, "NOT_FOUND")  # not theirs to end
        data(await second.get("/api/v1/users/me", headers=desktop_headers))

        ended = data(await first.delete(f"/api/v1/auth/sessions/{desktop_id}", headers=phone_headers))
        assert ended == {"sessions_revoked": 1}
        gone = await second.get("/api/v1/users/me", headers=desktop_headers)
        assert (gone.status_code, gone.json()["code"]) == (401, "AUTH_SESSION_REVOKED")
        assert [s["current"] for s in data(await first.get("/api/v1/auth/sessions", headers=phone_headers))] == [True]
        again = await first.delete(f"/api/v1/auth/sessions/{desktop_id}", headers=phone_headers)
        assert again.status_code == 404
        bad = await first.delete("/api/v1/auth/sessions/not-a-session", headers=phone_headers)
        assert (bad.status_code, bad.json()["code"]) == (422, "VALIDATION_FAILED")
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize(
    "weak",
    ["password123", "Passw0rd", "admin123", "aa123456", "woaini1314", "Secret123", "qwer1234", "wardrobe2026"],
)
async def test_common_and_guessable_passwords_are_refused(api: Api, weak: str) -> None:
    user = await sms_login(api.client)
    english = {**user.headers, "Accept-Language": "en"}
    resp = await api.client.put("/api/v1/auth/password", json={"new_password": weak}, headers=english)
    assert resp.status_code == 422, weak
    [error] = resp.json()["data"]
    assert error["field"] == "new_password"
    assert error["message"].startswith("is too easy to guess")


async def test_a_strong_password_is_taken(api: Api) -> None:
    user = await sms_login(api.client)
    data(await api.client.put("/api/v1/auth/password", json={"new_password": PASSWORD}, headers=user.headers))
