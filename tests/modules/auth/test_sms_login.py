"""SMS-code login: registration, code rules, brute force, limits, no registration oracle."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from tests.conftest import Api
from tests.fixtures.auth import data, new_phone, request_code, sms_login
from wardrobe.core.db import unit_of_work
from wardrobe.core.ratelimit import per_seconds
from wardrobe.models import SmsCode, User
from wardrobe.models.base import utcnow


async def _login(api: Api, phone: str, code: str) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post("/api/v1/auth/login", json={"method": "sms", "phone": phone, "code": code})
    return resp.status_code, resp.json()


async def test_first_sms_login_registers_and_second_does_not(api: Api) -> None:
    phone = new_phone()
    code = await request_code(api.client, phone)
    status, body = await _login(api, phone, code)
    assert status == 200, body
    assert body["data"]["is_new_user"] is True
    assert body["data"]["token_type"] == "Bearer"
    assert body["data"]["expires_in"] == 900
    assert body["data"]["user"]["phone_masked"] == phone[:3] + "****" + phone[-4:]
    assert body["data"]["user"]["profile_completed"] is False

    await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", phone)
    code = await request_code(api.client, phone)
    status, body = await _login(api, phone, code)
    assert status == 200
    assert body["data"]["is_new_user"] is False
    async with unit_of_work(api.infra.session_factory) as db:
        assert len((await db.scalars(select(User).where(User.phone == phone))).all()) == 1


async def test_code_is_stored_hashed_never_plain(api: Api) -> None:
    phone = new_phone()
    code = await request_code(api.client, phone)
    async with unit_of_work(api.infra.session_factory) as db:
        row = (await db.scalars(select(SmsCode).where(SmsCode.phone == phone))).one()
    assert code not in row.code_hash
    assert len(row.code_hash) == 64


async def test_wrong_reused_and_expired_codes_fail(api: Api) -> None:
    phone = new_phone()
    code = await request_code(api.client, phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    status, body = await _login(api, phone, wrong)
    assert (status, body["code"]) == (400, "AUTH_CODE_INVALID")

    status, _ = await _login(api, phone, code)
    assert status == 200
    status, body = await _login(api, phone, code)  # reused
    assert (status, body["code"]) == (400, "AUTH_CODE_INVALID")

    other = new_phone()
    code = await request_code(api.client, other)
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(
            update(SmsCode).where(SmsCode.phone == other).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    status, body = await _login(api, other, code)  # expired
    assert (status, body["code"]) == (400, "AUTH_CODE_INVALID")


async def test_sixth_try_fails_even_with_the_right_code(api: Api) -> None:
    phone = new_phone()
    code = await request_code(api.client, phone)
    wrong = f"{(int(code) + 7) % 1_000_000:06d}"
    for _ in range(5):
        status, body = await _login(api, phone, wrong)
        assert body["code"] == "AUTH_CODE_INVALID"
    status, body = await _login(api, phone, code)
    assert (status, body["code"]) == (400, "AUTH_CODE_INVALID")


async def test_right_code_on_fifth_try_still_works(api: Api) -> None:
    phone = new_phone()
    code = await request_code(api.client, phone)
    wrong = f"{(int(code) + 3) % 1_000_000:06d}"
    for _ in range(4):
        await _login(api, phone, wrong)
    status, _ = await _login(api, phone, code)
    assert status == 200


async def test_concurrent_guessing_never_exceeds_the_attempt_cap(api: Api) -> None:
    phone = new_phone()
    code = await request_code(api.client, phone)
    guesses = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, 21)]
    results = await asyncio.gather(*(_login(api, phone, g) for g in guesses))
    assert all(body["code"] == "AUTH_CODE_INVALID" for _, body in results)
    async with unit_of_work(api.infra.session_factory) as db:
        row = (await db.scalars(select(SmsCode).where(SmsCode.phone == phone))).one()
    assert row.attempts == 5
    status, _ = await _login(api, phone, code)
    assert status == 400


async def test_new_code_supersedes_the_old_one(api: Api) -> None:
    phone = new_phone()
    first = await request_code(api.client, phone)
    await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", phone)
    second = await request_code(api.client, phone)
    if first != second:
        status, _ = await _login(api, phone, first)
        assert status == 400
    status, _ = await _login(api, phone, second)
    assert status == 200


async def test_resend_cooldown_answers_429_with_retry_after(api: Api) -> None:
    phone = new_phone()
    await request_code(api.client, phone)
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert resp.status_code == 429
    assert resp.json()["code"] == "RATE_LIMITED"
    assert int(resp.headers["Retry-After"]) in range(1, 62)


async def test_daily_cap_per_phone(api_factory: object) -> None:
    api: Api = await api_factory(sms_daily_cap_per_phone=3)  # type: ignore[operator]
    phone = new_phone()
    for _ in range(3):
        await request_code(api.client, phone)
        await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", phone)
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 60


async def test_cap_per_ip(api_factory: object) -> None:
    api: Api = await api_factory(sms_hourly_cap_per_ip=3)  # type: ignore[operator]
    for _ in range(3):
        await request_code(api.client, new_phone())
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone()})
    assert resp.status_code == 429
    assert resp.json()["code"] == "RATE_LIMITED"


async def test_malformed_phone_is_a_validation_error(api: Api) -> None:
    for bad in ["12345", "23812345678", "1381234567a", "", "+1 650 555 0100"]:
        resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": bad})
        assert resp.status_code == 422, bad
        body = resp.json()
        assert body["code"] == "VALIDATION_FAILED"
        assert body["data"][0]["field"] == "phone"


async def test_phone_formats_are_normalised(api: Api) -> None:
    code = await request_code(api.client, "+86 139-0000-9999")
    status, body = await _login(api, "13900009999", code)
    assert status == 200, body


async def test_unknown_purpose_and_extra_fields_are_rejected(api: Api) -> None:
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone(), "purpose": "spam"})
    assert resp.status_code == 422
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone(), "admin": True})
    assert resp.status_code == 422


async def test_sms_code_answer_does_not_reveal_registration(api: Api) -> None:
    registered = (await sms_login(api.client)).phone
    await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", registered)
    for purpose in ("login", "reset_password"):
        a = data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": registered, "purpose": purpose}))
        b = data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone(), "purpose": purpose}))
        assert a.keys() == b.keys()
        assert a["cooldown_seconds"] == b["cooldown_seconds"]
        await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", registered)


async def test_a_request_refused_by_the_address_cap_costs_the_phone_nothing(api_factory: object) -> None:
    # Two client addresses behind a trusted proxy: an attacker's, whose SMS cap is full, and the
    # victim's own.
    api: Api = await api_factory(  # type: ignore[operator]
        sms_hourly_cap_per_ip=2, sms_daily_cap_per_phone=2, trusted_proxies=["203.0.113.7"]
    )
    attacker, own = {"X-Forwarded-For": "198.51.100.66"}, {"X-Forwarded-For": "198.51.100.77"}
    for _ in range(2):
        data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone()}, headers=attacker))
    victim = new_phone()
    for _ in range(3):
        resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": victim}, headers=attacker)
        assert (resp.status_code, resp.json()["code"]) == (429, "RATE_LIMITED")

    # At once (no cooldown was taken), and both of the day's sends are still there.
    first = data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": victim}, headers=own))
    await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", victim)
    second = data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": victim}, headers=own))
    status, body = await _login(api, victim, second["debug_code"])
    assert status == 200, body
    assert first["cooldown_seconds"] == 60
