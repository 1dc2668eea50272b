"""API keys for business customers: made with fresh proof and shown once, stored hashed, acting as
their owner within their scopes (and spending the owner's quota), held to their own rate limit,
refused everywhere else, and stopped at once when revoked."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import balance, give_quota, run_to_end
from tests.modules.account.erasure_flows import clear_cooldown, thumbnail_feature, upload_photo
from wardrobe.core.db import unit_of_work
from wardrobe.models import ApiKey, AuditLog

KEYS = "/api/v1/api-keys"


@pytest.fixture
async def keys_api(api_factory: Any) -> Api:
    api: Api = await api_factory(worker_in_process=True, api_keys_per_user=3)
    await thumbnail_feature(api, await login_as(api, "admin"))
    return api


async def _code(api: Api, user: Session) -> str:
    await clear_cooldown(api, user.phone)
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"purpose": "create_api_key"}, headers=user.headers)
    return str(data(resp)["debug_code"])


async def _make(api: Api, user: Session, status: int = 201, **body: Any) -> Any:
    body.setdefault("name", "shop backend")
    body.setdefault("scopes", ["tasks:create", "tasks:read", "uploads:create"])
    if "password" not in body and "code" not in body:
        body["code"] = await _code(api, user)
    return data(await api.client.post(KEYS, json=body, headers=user.headers), status)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_key_is_shown_once_stored_hashed_and_acts_as_its_owner(keys_api: Api) -> None:
    api = keys_api
    owner = await sms_login(api.client)
    uid = owner.user["id"]
    await give_quota(api, uid, 5)
    made = await _make(api, owner)
    secret = made["secret"]
    assert secret.startswith("wk_")
    assert len(secret) >= 40
    assert secret.startswith(made["prefix"])
    assert len(made["prefix"]) < len(secret) // 2
    listed = data(await api.client.get(KEYS, headers=owner.headers))
    assert [k["id"] for k in listed] == [made["id"]]
    assert "secret" not in listed[0]
    assert secret not in str(listed)
    async with unit_of_work(api.infra.session_factory) as db:
        row = await db.get(ApiKey, made["id"])
        audit = await db.scalar(select(AuditLog).where(AuditLog.action == "api_key.create"))
    assert row is not None
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert audit is not None
    assert secret not in str(audit.after)

    # The key uploads, runs a feature and reads the result, as its owner, on the owner's quota.
    key = _bearer(secret)
    as_key = Session(phone=owner.phone, access=secret, refresh="", user=owner.user)
    before = await balance(api, uid)
    upload = await upload_photo(api, as_key)
    created = data(
        await api.client.post("/api/v1/tasks", json={"feature": "thumb", "inputs": {"image": upload}}, headers=key),
        202,
    )
    done = await run_to_end(api, as_key, created["id"])
    assert done["status"] == "succeeded"
    page = data(await api.client.get("/api/v1/tasks", headers=key))
    assert [t["id"] for t in page["items"]] == [created["id"]]
    assert (await balance(api, uid))[0] == before[0] - 1
    # The owner sees the same task with a login.
    assert data(await api.client.get(f"/api/v1/tasks/{created['id']}", headers=owner.headers))["status"] == "succeeded"


async def test_a_key_reaches_only_what_its_scopes_name(keys_api: Api) -> None:
    api = keys_api
    owner = await sms_login(api.client)
    reader = _bearer((await _make(api, owner, scopes=["tasks:read"]))["secret"])
    assert data(await api.client.get("/api/v1/tasks", headers=reader))["items"] == []
    for method, path, body in (
        ("POST", "/api/v1/tasks", {"feature": "thumb", "inputs": {}}),
        ("POST", "/api/v1/uploads", {"content_type": "image/png", "size": 100}),
        ("GET", "/api/v1/users/me", None),  # no scope names it: a login only
        ("GET", "/api/v1/billing/quota", None),
        ("POST", KEYS, {"name": "x", "scopes": ["tasks:read"], "password": "whatever"}),  # keys make no keys
        ("GET", KEYS, None),
    ):
        resp = await api.client.request(method, path, json=body, headers=reader)
        assert (resp.status_code, resp.json()["code"]) == (403, "PERMISSION_DENIED"), (method, path)
    forged = await api.client.get("/api/v1/tasks", headers=_bearer("wk_" + "A" * 43))
    assert (forged.status_code, forged.json()["code"]) == (401, "AUTH_TOKEN_INVALID")


async def test_making_a_key_needs_fresh_proof_and_valid_scopes(keys_api: Api) -> None:
    api = keys_api
    owner = await sms_login(api.client)
    no_proof = await api.client.post(KEYS, json={"name": "x", "scopes": ["tasks:read"]}, headers=owner.headers)
    assert (no_proof.status_code, no_proof.json()["code"]) == (422, "VALIDATION_FAILED")
    wrong = await api.client.post(
        KEYS, json={"name": "x", "scopes": ["tasks:read"], "code": "000000"}, headers=owner.headers
    )
    assert wrong.json()["code"] == "AUTH_CODE_INVALID"
    for scopes in (["admin"], ["tasks:read", "tasks:read"], []):
        resp = await api.client.post(
            KEYS, json={"name": "x", "scopes": scopes, "code": await _code(api, owner)}, headers=owner.headers
        )
        assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED"), scopes
    assert data(await api.client.get(KEYS, headers=owner.headers)) == []
    for _ in range(3):
        await _make(api, owner, scopes=["tasks:read"])
    too_many = await api.client.post(
        KEYS, json={"name": "x", "scopes": ["tasks:read"], "code": await _code(api, owner)}, headers=owner.headers
    )
    assert (too_many.status_code, too_many.json()["data"]["reason"]) == (409, "too_many_keys")


async def test_revoking_stops_the_key_at_once_and_only_that_key(keys_api: Api) -> None:
    api = keys_api
    owner, other = await sms_login(api.client), await sms_login(api.client)
    first, second = await _make(api, owner, scopes=["tasks:read"]), await _make(api, owner, scopes=["tasks:read"])
    assert (await api.client.get("/api/v1/tasks", headers=_bearer(first["secret"]))).status_code == 200
    # Someone else cannot revoke it.
    theirs = await api.client.delete(f"{KEYS}/{first['id']}", headers=other.headers)
    assert (theirs.status_code, theirs.json()["code"]) == (404, "NOT_FOUND")
    revoked = data(await api.client.delete(f"{KEYS}/{first['id']}", headers=owner.headers))
    assert revoked["revoked_at"] is not None
    for path in ("/api/v1/tasks", "/api/v1/tasks/00000000000000000000000000000000"):
        resp = await api.client.get(path, headers=_bearer(first["secret"]))
        assert (resp.status_code, resp.json()["code"]) == (401, "AUTH_SESSION_REVOKED"), path
    assert (await api.client.get("/api/v1/tasks", headers=_bearer(second["secret"]))).status_code == 200
    again = data(await api.client.delete(f"{KEYS}/{first['id']}", headers=owner.headers))
    assert again["revoked_at"] == revoked["revoked_at"]
    async with unit_of_work(api.infra.session_factory) as db:
        actions = list(await db.scalars(select(AuditLog.action).where(AuditLog.target_type == "api_key")))
    assert sorted(actions) == ["api_key.create", "api_key.create", "api_key.revoke"]


async def test_each_key_has_its_own_rate_limit(keys_api: Api) -> None:
    api = keys_api
    owner = await sms_login(api.client)
    slow = _bearer((await _make(api, owner, scopes=["tasks:read"], requests_per_minute=2))["secret"])
    other = _bearer((await _make(api, owner, scopes=["tasks:read"]))["secret"])
    answers = [(await api.client.get("/api/v1/tasks", headers=slow)).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert (await api.client.get("/api/v1/tasks", headers=other)).status_code == 200
    assert (await api.client.get("/api/v1/tasks", headers=owner.headers)).status_code == 200  # the owner's login


async def test_a_disabled_owner_or_an_expired_key_is_refused(keys_api: Api) -> None:
    api = keys_api
    owner = await sms_login(api.client)
    key = _bearer((await _make(api, owner, scopes=["tasks:read"], expires_in_days=1))["secret"])
    assert (await api.client.get("/api/v1/tasks", headers=key)).status_code == 200
    async with unit_of_work(api.infra.session_factory) as db:
        row = await db.scalar(select(ApiKey).where(ApiKey.user_id == owner.user["id"]))
        assert row is not None
        row.expires_at = row.created_at
    resp = await api.client.get("/api/v1/tasks", headers=key)
    assert (resp.status_code, resp.json()["code"]) == (401, "AUTH_TOKEN_INVALID")
