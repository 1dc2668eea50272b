"""The catalog is served from each process's cache and an admin's edit reaches every
process through the invalidation broadcast; the kill switch rides the same path."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import give_quota, make_feature, step
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog, FeatureDefinition

INSTANT = [step("only", provider="instant", action="passthrough")]


async def _feature_names(api: Api, headers: dict[str, str]) -> dict[str, str]:
    return {f["key"]: f["name"] for f in data(await api.client.get("/api/v1/features", headers=headers))}


async def _feature_id(api: Api, key: str, headers: dict[str, str]) -> int:
    features = data(await api.client.get("/api/v1/admin/features", headers=headers))
    return int(next(f["id"] for f in features if f["key"] == key))


async def _write(api: Api, feature_id: int, headers: dict[str, str], **changes: Any) -> None:
    features = data(await api.client.get("/api/v1/admin/features", headers=headers))
    body = next(f for f in features if f["id"] == feature_id)
    body = {k: v for k, v in body.items() if k not in ("id", "deleted_at", "updated_at")} | changes
    data(await api.client.put(f"/api/v1/admin/features/{feature_id}", json=body, headers=headers))


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_an_edit_through_one_process_is_served_by_the_other_after_the_event(api_factory: Any) -> None:
    a: Api = await api_factory()
    b: Api = await api_factory()
    admin, operator = await login_as(a, "admin"), await login_as(a, "operator")
    user = await sms_login(b.client)
    await make_feature(a, admin, "vivid", INSTANT, {"r": "$steps.only.key"})
    # A's creations (pipeline, feature) were broadcast too: wait for both, so that no late one
    # drops what B caches next.
    await b.infra.cache.wait_received(2)
    assert (await _feature_names(b, user.headers))["vivid"] == "vivid"
    feature_id = await _feature_id(a, "vivid", operator.headers)

    # Changed behind the service's back: B keeps serving what it cached (the cache is in use).
    async with unit_of_work(b.infra.session_factory) as db:
        await db.execute(update(FeatureDefinition).where(FeatureDefinition.id == feature_id).values(name="sneaky"))
    assert (await _feature_names(b, user.headers))["vivid"] == "vivid"

    received = b.infra.cache.received
    await _write(a, feature_id, admin.headers, name="Vivid 2")
    await b.infra.cache.wait_received(received + 1)
    assert (await _feature_names(b, user.headers))["vivid"] == "Vivid 2"

    # The kill switch through A: B refuses new tasks of the feature on the next request.
    await give_quota(b, user.user["id"], 5)
    received = b.infra.cache.received
    resp = await a.client.post(
        f"/api/v1/admin/features/{feature_id}/switch",
        json={"enabled": False, "reason": "vendor incident"},
        headers=operator.headers,
    )
    assert data(resp)["is_enabled"] is False
    await b.infra.cache.wait_received(received + 1)
    refused = await b.client.post(
        "/api/v1/tasks", json={"feature": "vivid", "inputs": {"key": "x"}}, headers=user.headers
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "FEATURE_UNAVAILABLE"
    assert "vivid" not in await _feature_names(b, user.headers)


async def test_the_kill_switch_needs_a_reason_is_audited_and_can_be_undone(api: Api) -> None:
    admin, operator = await login_as(api, "admin"), await login_as(api, "operator")
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 5)
    await make_feature(api, admin, "switchy", INSTANT, {"r": "$steps.only.key"})
    feature_id = await _feature_id(api, "switchy", operator.headers)
    url = f"/api/v1/admin/features/{feature_id}/switch"

    missing = await api.client.post(url, json={"enabled": False}, headers=operator.headers)
    assert missing.json()["code"] == "VALIDATION_FAILED"
    denied = await api.client.post(url, json={"enabled": False, "reason": "nope"}, headers=user.headers)
    assert denied.json()["code"] == "PERMISSION_DENIED"
    ghost = await api.client.post(
        "/api/v1/admin/features/999999/switch", json={"enabled": False, "reason": "x1"}, headers=operator.headers
    )
    assert ghost.json()["code"] == "NOT_FOUND"

    body = {"feature": "switchy", "inputs": {"key": "k"}}
    data(await api.client.post(url, json={"enabled": False, "reason": "vendor down"}, headers=operator.headers))
    off = await api.client.post("/api/v1/tasks", json=body, headers=user.headers)
    assert off.json()["code"] == "FEATURE_UNAVAILABLE"
    data(await api.client.post(url, json={"enabled": True, "reason": "vendor back"}, headers=operator.headers))
    data(await api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)

    async with unit_of_work(api.infra.session_factory) as db:
        trail = (
            await db.execute(
                select(AuditLog.action, AuditLog.reason)
                .where(AuditLog.target_type == "feature", AuditLog.target_id == "switchy")
                .order_by(AuditLog.id)
            )
        ).all()
    assert [tuple(row) for row in trail][-2:] == [("feature.disable", "vendor down"), ("feature.enable", "vendor back")]


async def test_a_feature_carries_its_english_name_from_the_operator_to_users(api: Api) -> None:
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "bilingual", INSTANT, {"r": "$steps.only.key"})
    feature_id = await _feature_id(api, "bilingual", admin.headers)
    await _write(api, feature_id, admin.headers, name="双语", name_en="Bilingual", description_en="In English too")
    user = await sms_login(api.client)
    [listed] = [
        f for f in data(await api.client.get("/api/v1/features", headers=user.headers)) if f["key"] == "bilingual"
    ]
    assert (listed["name"], listed["name_en"], listed["description_en"]) == ("双语", "Bilingual", "In English too")
    # A replace without them clears them (PUT is a whole replacement), as for every optional field.
    await _write(api, feature_id, admin.headers, name_en=None, description_en=None)
    [listed] = [
        f for f in data(await api.client.get("/api/v1/features", headers=user.headers)) if f["key"] == "bilingual"
    ]
    assert (listed["name_en"], listed["description_en"]) == (None, None)
