"""TOTP as a second factor: enrolment, the code at login, replays, guessing, secrecy of the secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, request_code, sms_login
from tests.fixtures.totp import PASSWORD, PinnedClock, bearer, enrol, password_login, set_password, wrong_code
from wardrobe.core.logging import mask_phone
from wardrobe.models import AuditLog, UserTotp
from wardrobe.modules.crypto.keys import LocalKeyFile
from wardrobe.modules.distributors.commands import run_rotation


def _code(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["code"]


async def _audits(api: Api, user_id: int) -> list[AuditLog]:
    async with api.infra.session_factory() as db:
        rows = await db.scalars(
            select(AuditLog).where(AuditLog.target_type == "user", AuditLog.target_id == str(user_id))
        )
        return list(rows)


async def _stored(api: Api, user_id: int) -> UserTotp | None:
    async with api.infra.session_factory() as db:
        return await db.get(UserTotp, user_id)


async def _current_session(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    sessions = data(await api.client.get("/api/v1/auth/sessions", headers=headers))
    current: dict[str, Any] = next(s for s in sessions if s["current"])
    return current


async def test_setup_enable_disable_round_trip(api: Api, totp_clock: PinnedClock) -> None:
    first = await login_as(api, "operator")
    await set_password(api.client, first)
    second = bearer(await password_login(api.client, first.phone))
    setup = "/api/v1/auth/totp/setup"

    assert _code(await api.client.post(setup, json={"password": "not-the-one-1"}, headers=second)) == (
        401,
        "AUTH_INVALID_CREDENTIALS",
    )
    resp = await api.client.post(setup, json={"password": PASSWORD}, headers=second)
    started = data(resp)
    assert resp.headers["cache-control"] == "no-store"
    secret, uri = started["secret"], urlsplit(started["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == f"/Wardrobe:{mask_phone(first.phone)}"
    assert parse_qs(uri.query) == {"secret": [secret], "issuer": ["Wardrobe"]}
    assert first.phone not in started["otpauth_uri"]
    # Pending: nothing changes until a code proves the app holds the secret.
    assert data(await api.client.get("/api/v1/users/me", headers=second))["totp_enabled"] is False
    assert (await password_login(api.client, first.phone)).status_code == 200

    enable = "/api/v1/auth/totp/enable"
    bad = {"code": wrong_code(secret, totp_clock)}
    assert _code(await api.client.post(enable, json=bad, headers=second)) == (400, "AUTH_CODE_INVALID")
    assert data(await api.client.post(enable, json={"code": totp_clock.code(secret)}, headers=second)) == {
        "enabled": True,
        "other_sessions_revoked": 2,
    }
    assert _code(await api.client.get("/api/v1/users/me", headers=first.headers)) == (401, "AUTH_SESSION_REVOKED")
    me = await api.client.get("/api/v1/users/me", headers=second)
    assert data(me)["totp_enabled"] is True
    assert secret not in me.text
    assert (await _current_session(api, second))["mfa"] is True  # the code just given counts
    assert _code(await api.client.post(setup, json={"password": PASSWORD}, headers=second)) == (409, "CONFLICT")
    assert _code(await api.client.post(enable, json={"code": totp_clock.code(secret, 1)}, headers=second)) == (
        409,
        "CONFLICT",
    )

    disable = "/api/v1/auth/totp/disable"
    # The code that enabled it is used up, although still inside its window.
    replay = {"code": totp_clock.code(secret)}
    assert _code(await api.client.post(disable, json=replay, headers=second)) == (400, "AUTH_CODE_INVALID")
    other = bearer(await password_login(api.client, first.phone, totp_code=totp_clock.code(secret, 1)))
    totp_clock.advance(2)
    done = await api.client.post(disable, json={"code": totp_clock.code(secret)}, headers=second)
    assert data(done) == {"enabled": False, "other_sessions_revoked": 1}
    assert _code(await api.client.get("/api/v1/users/me", headers=other)) == (401, "AUTH_SESSION_REVOKED")
    assert data(await api.client.get("/api/v1/users/me", headers=second))["totp_enabled"] is False
    assert (await _current_session(api, second))["mfa"] is False
    assert await _stored(api, first.user["id"]) is None
    assert _code(await api.client.post(disable, json={"code": totp_clock.code(secret, 1)}, headers=second)) == (
        409,
        "CONFLICT",
    )
    assert (await password_login(api.client, first.phone)).status_code == 200

    trail = [(a.action, a.actor_id, a.before, a.after) for a in await _audits(api, first.user["id"])]
    assert trail == [
        ("user.totp_enabled", first.user["id"], {"totp_enabled": False}, {"totp_enabled": True}),
        ("user.totp_disabled", first.user["id"], {"totp_enabled": True}, {"totp_enabled": False}),
    ]


async def test_setting_up_again_replaces_a_pending_secret(api: Api, totp_clock: PinnedClock) -> None:
    s = await sms_login(api.client)
    await set_password(api.client, s)
    setup = {"password": PASSWORD}
    old = data(await api.client.post("/api/v1/auth/totp/setup", json=setup, headers=s.headers))["secret"]
    new = data(await api.client.post("/api/v1/auth/totp/setup", json=setup, headers=s.headers))["secret"]
    assert old != new
    enable = "/api/v1/auth/totp/enable"
    resp = await api.client.post(enable, json={"code": totp_clock.code(old)}, headers=s.headers)
    assert _code(resp) == (400, "AUTH_CODE_INVALID")
    assert data(await api.client.post(enable, json={"code": totp_clock.code(new)}, headers=s.headers))["enabled"]


async def test_setup_needs_a_password_and_enable_a_setup(api: Api) -> None:
    s = await sms_login(api.client)
    resp = await api.client.post("/api/v1/auth/totp/setup", json={"password": PASSWORD}, headers=s.headers)
    assert _code(resp) == (422, "VALIDATION_FAILED")
    assert resp.json()["data"][0]["field"] == "password"
    resp = await api.client.post("/api/v1/auth/totp/enable", json={"code": "123456"}, headers=s.headers)
    assert (*_code(resp), resp.json()["data"]) == (409, "CONFLICT", {"reason": "no_pending_setup"})
    for bad in ({"code": "12345"}, {"code": 123456}, {"code": "12345a"}, {}):
        resp = await api.client.post("/api/v1/auth/totp/enable", json=bad, headers=s.headers)
        assert _code(resp) == (422, "VALIDATION_FAILED"), bad


async def test_login_needs_a_fresh_code_once_enabled(api: Api, totp_clock: PinnedClock) -> None:
    s = await login_as(api, "operator")
    await set_password(api.client, s)
    secret = await enrol(api.client, s, totp_clock)

    assert _code(await password_login(api.client, s.phone)) == (401, "TOTP_REQUIRED")
    wrong = wrong_code(secret, totp_clock)
    assert _code(await password_login(api.client, s.phone, totp_code=wrong)) == (401, "TOTP_INVALID")
    # The code that enabled TOTP is used up, although still inside its window.
    assert _code(await password_login(api.client, s.phone, totp_code=totp_clock.code(secret))) == (
        401,
        "TOTP_INVALID",
    )
    # A right code does not make up for a wrong password.
    resp = await password_login(api.client, s.phone, "not-the-one-1", totp_code=totp_clock.code(secret, 1))
    assert _code(resp) == (401, "AUTH_INVALID_CREDENTIALS")

    totp_clock.advance()
    code = totp_clock.code(secret)
    resp = await password_login(api.client, s.phone, totp_code=code)
    assert data(resp)["user"]["totp_enabled"] is True
    assert (await _current_session(api, bearer(resp)))["mfa"] is True
    assert _code(await password_login(api.client, s.phone, totp_code=code)) == (401, "TOTP_INVALID")  # replay
    # A code older than the last one accepted is refused too, while still inside its window.
    assert _code(await password_login(api.client, s.phone, totp_code=totp_clock.code(secret, -1))) == (
        401,
        "TOTP_INVALID",
    )
    # Too far ahead (beyond one step of drift) is no code at all.
    assert _code(await password_login(api.client, s.phone, totp_code=totp_clock.code(secret, 2))) == (
        401,
        "TOTP_INVALID",
    )
    # A code from the next step (an app's clock a little ahead) is accepted once.
    assert (await password_login(api.client, s.phone, totp_code=totp_clock.code(secret, 1))).status_code == 200


async def test_racing_logins_with_one_code_open_one_session(api: Api, totp_clock: PinnedClock) -> None:
    s = await login_as(api, "operator")
    await set_password(api.client, s)
    secret = await enrol(api.client, s, totp_clock)
    totp_clock.advance()
    code = totp_clock.code(secret)
    answers = await asyncio.gather(*(password_login(api.client, s.phone, totp_code=code) for _ in range(4)))
    assert sorted(_code(r) for r in answers) == [(200, "OK")] + [(401, "TOTP_INVALID")] * 3


async def test_sms_login_of_an_account_with_totp_needs_the_code(api: Api, totp_clock: PinnedClock) -> None:
    s = await login_as(api, "operator")
    await set_password(api.client, s)
    secret = await enrol(api.client, s, totp_clock)
    totp_clock.advance()

    async def sms(totp_code: str | None) -> Any:
        await _free_cooldown(api, s.phone)
        body: dict[str, Any] = {"method": "sms", "phone": s.phone, "code": await request_code(api.client, s.phone)}
        if totp_code is not None:
            body["totp_code"] = totp_code
        return await api.client.post("/api/v1/auth/login", json=body)

    assert _code(await sms(None)) == (401, "TOTP_REQUIRED")
    assert _code(await sms(wrong_code(secret, totp_clock))) == (401, "TOTP_INVALID")
    resp = await sms(totp_clock.code(secret))
    assert (await _current_session(api, bearer(resp)))["mfa"] is True


async def _free_cooldown(api: Api, phone: str) -> None:
    from wardrobe.core.ratelimit import per_seconds

    await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", phone)


async def test_guessed_codes_spend_the_password_back_off(api_factory: Any, totp_clock: PinnedClock) -> None:
    api: Api = await api_factory(login_failure_limits="3/minute;5/hour")
    s = await login_as(api, "operator")
    await set_password(api.client, s)
    secret = await enrol(api.client, s, totp_clock)
    totp_clock.advance()
    valid = {totp_clock.code(secret, step) for step in (-1, 0, 1)}
    guesses = [code for code in (f"{n:06d}" for n in range(20)) if code not in valid][:5]
    answers = [_code(await password_login(api.client, s.phone, totp_code=g)) for g in guesses]
    assert answers == [(401, "TOTP_INVALID")] * 3 + [(429, "RATE_LIMITED")] * 2
    # The right password and code from this address must wait too: the window is full.
    assert _code(await password_login(api.client, s.phone, totp_code=totp_clock.code(secret))) == (
        429,
        "RATE_LIMITED",
    )


async def test_guessing_codes_to_disable_is_limited(api_factory: Any, totp_clock: PinnedClock) -> None:
    api: Api = await api_factory(login_failure_limits="3/minute;5/hour")
    s = await login_as(api, "operator")
    await set_password(api.client, s)
    secret = await enrol(api.client, s, totp_clock)
    totp_clock.advance()
    wrong = wrong_code(secret, totp_clock)
    disable = "/api/v1/auth/totp/disable"
    answers = [_code(await api.client.post(disable, json={"code": wrong}, headers=s.headers)) for _ in range(4)]
    assert answers == [(400, "AUTH_CODE_INVALID")] * 3 + [(429, "RATE_LIMITED")]
    resp = await api.client.post(disable, json={"code": totp_clock.code(secret)}, headers=s.headers)
    assert _code(resp) == (429, "RATE_LIMITED")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the root handler renders (after redaction), as it would reach stdout."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(root.handlers[0].formatter if root.handlers else None)
    root.addHandler(handler)
    yield buffer
    root.removeHandler(handler)


async def test_the_secret_is_shown_once_and_stored_sealed(
    api: Api, totp_clock: PinnedClock, captured_logs: io.StringIO
) -> None:
    s = await login_as(api, "admin")
    await set_password(api.client, s)
    secret = await enrol(api.client, s, totp_clock)
    totp_clock.advance()
    resp = await password_login(api.client, s.phone, totp_code=totp_clock.code(secret))
    headers = bearer(resp)
    answers = [
        resp.text,
        (await api.client.get("/api/v1/users/me", headers=headers)).text,
        (await api.client.get("/api/v1/auth/sessions", headers=headers)).text,
        (await api.client.get("/api/v1/users/me/export", headers=headers)).text,
        (await api.client.get(f"/api/v1/admin/users?phone={s.phone}", headers=headers)).text,
    ]
    logged = captured_logs.getvalue()
    assert "totp_enabled" in logged  # the capture saw the flow
    for text in [*answers, logged]:
        assert secret not in text
    row = await _stored(api, s.user["id"])
    assert row is not None
    assert secret.encode() not in row.secret_ciphertext
    assert row.secret_key_ref.startswith("local:")
    for audit in await _audits(api, s.user["id"]):
        assert secret not in str(audit.before) + str(audit.after)


async def test_deleting_the_account_forgets_the_secret(api: Api, totp_clock: PinnedClock) -> None:
    s = await sms_login(api.client)
    await set_password(api.client, s)
    await enrol(api.client, s, totp_clock)
    resp = await api.client.request("DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=s.headers)
    data(resp)
    assert await _stored(api, s.user["id"]) is None


async def test_key_rotation_moves_totp_secrets_and_codes_still_open(
    api_factory: Any, totp_clock: PinnedClock, tmp_path: Path
) -> None:
    key_file = tmp_path / "master-keys.json"
    api: Api = await api_factory(kms_backend="local", kms_local_key_file=key_file)
    s = await login_as(api, "operator")
    await set_password(api.client, s)
    secret = await enrol(api.client, s, totp_clock)
    before = await _stored(api, s.user["id"])
    assert before is not None
    assert before.secret_key_ref == "local:1"

    LocalKeyFile(key_file).add_version()
    _, moved = await run_rotation(api.settings, new_key=False, batch_size=10, echo=lambda _: None)
    assert (moved.name, moved.total, moved.rewrapped) == ("user_totp.secret", 1, 1)
    after = await _stored(api, s.user["id"])
    assert after is not None
    assert after.secret_key_ref == "local:2"
    assert (after.secret_nonce, after.secret_ciphertext) == (before.secret_nonce, before.secret_ciphertext)
    body = json.loads(key_file.read_text())
    del body["keys"]["1"]  # nothing needs the old master key any more
    key_file.write_text(json.dumps(body))
    totp_clock.advance()
    assert (await password_login(api.client, s.phone, totp_code=totp_clock.code(secret))).status_code == 200
