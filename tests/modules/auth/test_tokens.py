"""Dual tokens: rotation, reuse detection, revocation, and every way a token can be bad."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from wardrobe.core import security
from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.security import TokenCodec
from wardrobe.models import AuthSession, RefreshToken


async def _me(api: Api, access: str) -> tuple[int, str]:
    resp = await api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {access}"})
    return resp.status_code, resp.json()["code"]


async def _refresh(api: Api, token: str) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    return resp.status_code, resp.json()


async def test_refresh_rotates_the_pair(api: Api) -> None:
    s = await sms_login(api.client)
    status, body = await _refresh(api, s.refresh)
    assert status == 200, body
    new = body["data"]
    assert new["refresh_token"] != s.refresh
    assert new["access_token"] != s.access
    assert await _me(api, new["access_token"]) == (200, "OK")
    status, body = await _refresh(api, new["refresh_token"])
    assert status == 200


async def test_replayed_refresh_token_revokes_the_whole_family(api: Api) -> None:
    s = await sms_login(api.client)
    _, body = await _refresh(api, s.refresh)
    successor = body["data"]
    status, body = await _refresh(api, s.refresh)  # the replay
    assert (status, body["code"]) == (401, "AUTH_REFRESH_REUSED")
    status, body = await _refresh(api, successor["refresh_token"])
    assert (status, body["code"]) == (401, "AUTH_SESSION_REVOKED")
    assert await _me(api, successor["access_token"]) == (401, "AUTH_SESSION_REVOKED")
    assert await _me(api, s.access) == (401, "AUTH_SESSION_REVOKED")


async def test_ten_concurrent_refreshes_leave_at_most_one_live_successor(api: Api) -> None:
    s = await sms_login(api.client)
    results = await asyncio.gather(*(_refresh(api, s.refresh) for _ in range(10)))
    winners = [body["data"] for status, body in results if status == 200]
    assert len(winners) <= 1
    # A loser sees the reuse, or, once a reuse has revoked the session, the revoked session.
    assert {body["code"] for status, body in results if status != 200} <= {
        "AUTH_REFRESH_REUSED",
        "AUTH_SESSION_REVOKED",
    }
    live = 0
    for winner in winners:
        status, _ = await _refresh(api, winner["refresh_token"])
        live += status == 200
    assert live <= 1
    async with unit_of_work(api.infra.session_factory) as db:
        unused_in_live_sessions = (
            await db.scalars(
                select(RefreshToken.id)
                .join(AuthSession, AuthSession.id == RefreshToken.session_id)
                .where(AuthSession.revoked_at.is_(None), RefreshToken.used_at.is_(None))
            )
        ).all()
    assert len(unused_in_live_sessions) <= 1


async def test_logout_refuses_the_access_token_on_the_next_request(api: Api) -> None:
    s = await sms_login(api.client)
    assert await _me(api, s.access) == (200, "OK")
    resp = await api.client.post("/api/v1/auth/logout", headers=s.headers)
    assert data(resp)["sessions_revoked"] == 1
    assert await _me(api, s.access) == (401, "AUTH_SESSION_REVOKED")
    status, body = await _refresh(api, s.refresh)
    assert (status, body["code"]) == (401, "AUTH_SESSION_REVOKED")


async def test_logout_all_revokes_every_device(api: Api) -> None:
    a = await sms_login(api.client)
    from wardrobe.core.ratelimit import per_seconds

    await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", a.phone)
    b = await sms_login(api.client, a.phone)
    resp = await api.client.post("/api/v1/auth/logout-all", headers=b.headers)
    assert data(resp)["sessions_revoked"] == 2
    assert await _me(api, a.access) == (401, "AUTH_SESSION_REVOKED")
    assert await _me(api, b.access) == (401, "AUTH_SESSION_REVOKED")


async def test_admin_revoke_takes_effect_at_once(api: Api) -> None:
    victim = await sms_login(api.client)
    admin = await login_as(api, "admin")
    resp = await api.client.post(
        f"/api/v1/admin/users/{victim.user['id']}/revoke-sessions",
        json={"reason": "stolen phone"},
        headers=admin.headers,
    )
    assert data(resp)["sessions_revoked"] == 1
    assert await _me(api, victim.access) == (401, "AUTH_SESSION_REVOKED")
    assert await _me(api, admin.access) == (200, "OK")


def _b64(obj: bytes) -> str:
    return base64.urlsafe_b64encode(obj).decode().rstrip("=")


def _claims(api: Api, s: Session, **changes: object) -> dict[str, object]:
    real = jwt.decode(s.access, options={"verify_signature": False})
    real.update(changes)
    return real


# The HS512 case signs with our 43-byte test secret on purpose; PyJWT warns that it is short for SHA-512.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_bad_tokens_are_refused_with_their_codes(api: Api) -> None:
    s = await sms_login(api.client)
    secret = api.settings.jwt_secret.get_secret_value()
    now = int(time.time())
    header_none = _b64(b'{"alg":"none","typ":"JWT"}')
    payload = _b64(json.dumps(_claims(api, s)).encode())
    cases = {
        "alg none": (f"{header_none}.{payload}.", "AUTH_TOKEN_INVALID"),
        "forged signature": (
            jwt.encode(_claims(api, s), "another-secret-of-enough-length-000000", "HS256"),
            "AUTH_TOKEN_INVALID",
        ),
        "wrong aud": (jwt.encode(_claims(api, s, aud="someone-else"), secret, "HS256"), "AUTH_TOKEN_INVALID"),
        "wrong iss": (jwt.encode(_claims(api, s, iss="evil"), secret, "HS256"), "AUTH_TOKEN_INVALID"),
        "expired": (
            jwt.encode(_claims(api, s, iat=now - 2000, exp=now - 1000), secret, "HS256"),
            "AUTH_TOKEN_EXPIRED",
        ),
        "HS512 not pinned": (jwt.encode(_claims(api, s), secret, "HS512"), "AUTH_TOKEN_INVALID"),
        "missing sid": (
            jwt.encode({k: v for k, v in _claims(api, s).items() if k != "sid"}, secret, "HS256"),
            "AUTH_TOKEN_INVALID",
        ),
        "refresh used as access": (s.refresh, "AUTH_TOKEN_INVALID"),
        "garbage": ("not-a-token", "AUTH_TOKEN_INVALID"),
        "other user's sid": (
            jwt.encode(_claims(api, s, sub="999999"), secret, "HS256"),
            "AUTH_TOKEN_INVALID",
        ),
    }
    for name, (token, code) in cases.items():
        assert await _me(api, token) == (401, code), name
    resp = await api.client.get("/api/v1/users/me")
    assert (resp.status_code, resp.json()["code"]) == (401, "AUTH_REQUIRED")
    resp = await api.client.get("/api/v1/users/me", headers={"Authorization": f"Basic {s.access}"})
    assert resp.status_code == 401
    # The genuine token still works: the cases above failed for their own reasons.
    assert await _me(api, s.access) == (200, "OK")


async def test_access_token_claims_are_complete_and_pinned(api: Api) -> None:
    s = await sms_login(api.client)
    header = jwt.get_unverified_header(s.access)
    claims = jwt.decode(s.access, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert {"sub", "role", "sid", "jti", "iat", "exp", "iss", "aud"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == 900


async def test_unknown_and_malformed_refresh_tokens(api: Api) -> None:
    status, body = await _refresh(api, "rt_unknown")
    assert (status, body["code"]) == (401, "AUTH_TOKEN_INVALID")
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": ""})
    assert resp.status_code == 422


def test_verified_tokens_are_kept_by_their_text_and_still_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = TokenCodec("s" * 32, "wardrobe", "wardrobe-api", ttl_seconds=60)
    token = codec.issue_access(7, "user", "a" * 32)
    verified: list[str] = []
    real_decode = jwt.decode

    def counted(*args: Any, **kwargs: Any) -> Any:
        verified.append(args[0])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)
    first = codec.decode_access(token)
    assert codec.decode_access(token) == first
    assert verified == [token]  # the second time from what was kept
    # Another text is verified on its own, even one that differs only in its signature.
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(AppError) as bad:
        codec.decode_access(forged)
    assert bad.value.code is ErrorCode.AUTH_TOKEN_INVALID
    assert verified == [token, forged]
    # A kept token still expires on time.
    later = first.expires_at + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(AppError) as expired:
        codec.decode_access(token)
    assert expired.value.code is ErrorCode.AUTH_TOKEN_EXPIRED


def test_the_kept_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "VERIFIED_TOKENS_KEPT", 3)
    codec = TokenCodec("s" * 32, "wardrobe", "wardrobe-api", ttl_seconds=60)
    tokens = [codec.issue_access(i, "user", f"{i:032d}") for i in range(5)]
    for token in tokens:
        codec.decode_access(token)
    assert list(codec._verified) == tokens[2:]  # the oldest went first


def test_a_rotated_key_keeps_the_tokens_it_signed_until_they_expire() -> None:
    old = TokenCodec("o" * 32, "wardrobe", "wardrobe-api", ttl_seconds=60)
    issued_before = old.issue_access(7, "user", "a" * 32)
    rotated = TokenCodec("n" * 32, "wardrobe", "wardrobe-api", ttl_seconds=60, previous=["o" * 32])
    assert rotated.decode_access(issued_before).user_id == 7
    issued_after = rotated.issue_access(8, "user", "b" * 32)
    assert jwt.get_unverified_header(issued_after)["kid"] != jwt.get_unverified_header(issued_before)["kid"]
    assert rotated.decode_access(issued_after).user_id == 8
    # Once the old secret is dropped from the list, what it signed is refused.
    retired = TokenCodec("n" * 32, "wardrobe", "wardrobe-api", ttl_seconds=60)
    with pytest.raises(AppError) as refused:
        retired.decode_access(issued_before)
    assert refused.value.code is ErrorCode.AUTH_TOKEN_INVALID
    # The old key cannot verify the new key's tokens either.
    with pytest.raises(AppError):
        old.decode_access(issued_after)


def test_a_token_naming_a_key_it_was_not_signed_with_is_refused() -> None:
    codec = TokenCodec("n" * 32, "wardrobe", "wardrobe-api", ttl_seconds=60, previous=["o" * 32])
    claims = {"sub": "1", "role": "admin", "sid": "s" * 32, "jti": "j", "iat": int(time.time())}
    claims |= {"exp": int(time.time()) + 60, "iss": "wardrobe", "aud": "wardrobe-api", "typ": "access"}
    new_kid = jwt.get_unverified_header(codec.issue_access(1, "user", "s" * 32))["kid"]
    forged = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": new_kid})
    with pytest.raises(AppError) as bad:
        codec.decode_access(forged)
    assert bad.value.code is ErrorCode.AUTH_TOKEN_INVALID
    unknown = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": "feedfeedfeedfeed"})
    with pytest.raises(AppError):
        codec.decode_access(unknown)
    # Tokens issued before key ids existed were signed by the current secret.
    legacy = jwt.encode(claims, "n" * 32, algorithm="HS256")
    assert codec.decode_access(legacy).role == "admin"
