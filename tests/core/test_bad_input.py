"""The bad inputs an outside review turned into 500s or silent changes, each refused with a clear
422 and nothing written. ``test_contract_inputs.py`` holds every operation to the same rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import balance, give_quota, make_feature, step
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog, Task

# The guard's sentence as a request without Accept-Language reads it (Chinese, the default).
SURROGATE = "应为有效的 Unicode 文本（含有孤立的代理码点）"
JSON = {"Content-Type": "application/json"}


def refused(resp: Any) -> list[dict[str, str]]:
    assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED"), resp.text
    items: list[dict[str, str]] = resp.json()["data"]
    return items


async def me(api: Api, s: Session) -> dict[str, Any]:
    profile: dict[str, Any] = data(await api.client.get("/api/v1/users/me", headers=s.headers))
    return profile


async def test_a_lone_surrogate_in_a_profile_is_a_422_naming_the_field_and_nothing_changes(api: Api) -> None:
    s = await sms_login(api.client)
    before = await me(api, s)
    for raw in (
        b'{"nickname": "\\ud800"}',  # an escaped lone surrogate
        b'{"nickname": "a\\udfffb"}',  # a trailing one, inside text
        b'{"nickname": "\xed\xa0\x80"}',  # one sent as raw UTF-8-encoded bytes
        b'{"nickname": "ok", "bio": "\\ud83d"}',  # the first half of an emoji only
    ):
        problems = refused(await api.client.patch("/api/v1/users/me", content=raw, headers={**s.headers, **JSON}))
        assert problems in ([{"field": "nickname", "message": SURROGATE}], [{"field": "bio", "message": SURROGATE}])
    assert await me(api, s) == before
    # A real surrogate pair is a character like any other.
    body = b'{"nickname": "\\u5c0f\\u8863 \\ud83d\\ude00"}'
    user = data(await api.client.patch("/api/v1/users/me", content=body, headers={**s.headers, **JSON}))
    assert user["nickname"] == "小衣 😀"


async def test_a_lone_surrogate_in_task_inputs_is_a_422_and_nothing_is_reserved_or_stored(api: Api) -> None:
    admin = await login_as(api, "admin")
    form = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"prompt": {"type": "string", "maxLength": 100}},
        "required": ["prompt"],
    }
    run = step("echo", provider="instant", action="passthrough", inputs={"prompt": "$inputs.prompt"})
    await make_feature(api, admin, "echo", [run], {"prompt": "$steps.echo.prompt"}, form_schema=form)
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 5)
    funds = await balance(api, user.user["id"])
    headers = {**user.headers, **JSON, "Idempotency-Key": "surrogate-0001"}
    for raw in (
        b'{"feature": "echo", "inputs": {"prompt": "\\udc00"}}',
        b'{"feature": "echo", "inputs": {"prompt": "\xed\xb0\x80"}}',
    ):
        problems = refused(await api.client.post("/api/v1/tasks", content=raw, headers=headers))
        assert problems == [{"field": "inputs.prompt", "message": SURROGATE}]
    assert await balance(api, user.user["id"]) == funds
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(func.count()).select_from(Task)) == 0
    # The same key with a valid prompt then makes the task: nothing was half-done before.
    good = b'{"feature": "echo", "inputs": {"prompt": "\\ud83d\\udc57 dress"}}'
    task = data(await api.client.post("/api/v1/tasks", content=good, headers=headers), 202)
    assert task["status"] in ("queued", "running", "succeeded")


async def test_a_birthday_is_a_date_string_never_a_number(api: Api) -> None:
    s = await sms_login(api.client)
    for birthday in (0, 86400, 1.5, "0", "1700000000", "19950501", True):
        problems = refused(await api.client.patch("/api/v1/users/me", json={"birthday": birthday}, headers=s.headers))
        assert [p["field"] for p in problems] == ["birthday"], birthday
    assert (await me(api, s))["birthday"] is None  # was 1970-01-01 for 0
    user = data(await api.client.patch("/api/v1/users/me", json={"birthday": "1995-05-01"}, headers=s.headers))
    assert user["birthday"] == "1995-05-01"


async def _provider_enabled(api: Api, admin: Session, slug: str) -> bool:
    providers = data(await api.client.get("/api/v1/admin/providers", headers=admin.headers))
    return bool(next(p for p in providers if p["slug"] == slug)["enabled"])


async def _audit_count(api: Api) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        return int(await db.scalar(select(func.count()).select_from(AuditLog)) or 0)


async def test_switches_take_true_or_false_never_0_or_a_string(api: Api) -> None:
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "demo", [step("s", provider="instant", action="passthrough")], {"k": "$steps.s.key"})
    feature = next(f for f in data(await api.client.get("/api/v1/admin/features", headers=admin.headers)))
    audits = await _audit_count(api)
    for enabled in (0, 1, "false", "off", None):
        body = {"enabled": enabled, "reason": "maintenance"}
        resp = await api.client.post("/api/v1/admin/providers/local/switch", json=body, headers=admin.headers)
        assert [p["field"] for p in refused(resp)] == ["enabled"], enabled
        url = f"/api/v1/admin/features/{feature['id']}/switch"
        assert [p["field"] for p in refused(await api.client.post(url, json=body, headers=admin.headers))] == [
            "enabled"
        ]
    # Nothing was switched off, and nothing was audited.
    assert await _provider_enabled(api, admin, "local") is True
    assert data(await api.client.get("/api/v1/admin/features", headers=admin.headers))[0]["is_enabled"] is True
    assert await _audit_count(api) == audits
    body = {"enabled": False, "reason": "maintenance"}
    data(await api.client.post("/api/v1/admin/providers/local/switch", json=body, headers=admin.headers))
    assert await _provider_enabled(api, admin, "local") is False


async def test_numbers_are_not_read_from_strings_nor_whole_numbers_from_fractions(api: Api) -> None:
    admin = await login_as(api, "admin")
    target = await sms_login(api.client)
    url = f"/api/v1/admin/users/{target.user['id']}/quota-adjustments"
    for delta in ("5", 5.0, True, "5abc"):
        problems = refused(
            await api.client.post(url, json={"delta": delta, "reason": "goodwill"}, headers=admin.headers)
        )
        assert [p["field"] for p in problems] == ["delta"], delta
    assert (await balance(api, target.user["id"]))[0] == 10  # the welcome grant only
    data(await api.client.post(url, json={"delta": 5, "reason": "goodwill"}, headers=admin.headers))
    assert (await balance(api, target.user["id"]))[0] == 15
    # Nor text from numbers, nor an enum from anything but its value.
    problems = refused(await api.client.post("/api/v1/auth/sms-codes", json={"phone": 13812345678}))
    assert [p["field"] for p in problems] == ["phone"]
    problems = refused(await api.client.post("/api/v1/auth/sms-codes", json={"phone": "13812345678", "purpose": 0}))
    assert [p["field"] for p in problems] == ["purpose"]
    sent = data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": "13812345678", "purpose": "login"}))
    assert sent["cooldown_seconds"] > 0


async def test_ids_beyond_64_bits_in_admin_paths_and_queries_are_a_422(api: Api) -> None:
    admin = await login_as(api, "admin")
    for value in (2**63, 2**64 + 1, 10**30, -(2**63) - 1, 0):
        reason = {"reason": "checking"}
        cases = [
            ("PATCH", f"/api/v1/admin/users/{value}", {"status": "disabled", **reason}, "user_id"),
            ("POST", f"/api/v1/admin/users/{value}/revoke-sessions", reason, "user_id"),
            ("POST", f"/api/v1/admin/users/{value}/quota-adjustments", {"delta": 1, **reason}, "user_id"),
            ("DELETE", f"/api/v1/admin/features/{value}", None, "feature_id"),
            ("PATCH", f"/api/v1/admin/provider-accounts/{value}", reason, "account_id"),
            ("POST", f"/api/v1/admin/distributors/applications/{value}/approve", {}, "application_id"),
            ("GET", f"/api/v1/admin/orders?user_id={value}", None, "user_id"),
        ]
        for method, url, body, field in cases:
            problems = refused(await api.client.request(method, url, json=body, headers=admin.headers))
            assert field in [p["field"] for p in problems], (method, url)
