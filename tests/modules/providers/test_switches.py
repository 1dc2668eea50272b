"""Operators take a provider out of service by hand: no new call reaches it, steps
fall back, every process follows at once, and the operator view shows why and what failed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import give_quota, make_feature, run_to_end, step
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog


async def _create(api: Api, user: Session, feature: str, key: str) -> str:
    resp = await api.client.post(
        "/api/v1/tasks", json={"feature": feature, "inputs": {"key": key}}, headers=user.headers
    )
    return str(data(resp, 202)["id"])


async def _providers(api: Api, admin: Session) -> dict[str, Any]:
    return {p["slug"]: p for p in data(await api.client.get("/api/v1/admin/providers", headers=admin.headers))}


async def test_a_provider_switched_off_gets_no_calls_and_steps_fall_back(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=True)
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "both", [step("only", provider=["fault", "fault2"])], {"r": "$steps.only.result"})
    await make_feature(api, admin, "alone", [step("only", provider=["fault"])], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 10)

    fault_vendor.scenario("fault:s0", fail_code="model_rejected")
    rejected = await run_to_end(api, user, await _create(api, user, "alone", "s0"))
    assert rejected["status"] == "failed"

    off = await api.client.post(
        "/api/v1/admin/providers/fault/switch",
        json={"enabled": False, "reason": "vendor incident #42"},
        headers=admin.headers,
    )
    assert data(off) == {"slug": "fault", "enabled": False, "reason": "vendor incident #42"}
    task = await run_to_end(api, user, await _create(api, user, "both", "s1"))
    assert task["outputs"][0]["value"] == "done:fault2:s1"
    assert fault_vendor.calls["fault:s1"] == 0  # never asked
    alone = await run_to_end(api, user, await _create(api, user, "alone", "s2"))
    assert alone["status"] == "failed"
    assert alone["refunded"] is True
    view = await _providers(api, admin)
    assert (view["fault"]["enabled"], view["fault"]["disabled_reason"]) == (False, "vendor incident #42")
    assert view["fault2"]["enabled"] is True
    # What the provider itself failed (a switched-off one is never called, so never blamed).
    failures = [(f["task_id"], f["error"]) for f in view["fault"]["recent_failures"]]
    assert failures == [(rejected["id"], "model_rejected")]

    on = await api.client.post(
        "/api/v1/admin/providers/fault/switch", json={"enabled": True, "reason": "resolved"}, headers=admin.headers
    )
    assert data(on)["enabled"] is True
    back = await run_to_end(api, user, await _create(api, user, "both", "s3"))
    assert back["outputs"][0]["value"] == "done:fault:s3"
    async with unit_of_work(api.infra.session_factory) as db:
        audit = list(
            await db.execute(
                select(AuditLog.action, AuditLog.target_id, AuditLog.reason)
                .where(AuditLog.target_type == "provider")
                .order_by(AuditLog.id)
            )
        )
    assert [tuple(a) for a in audit] == [
        ("provider.disable", "fault", "vendor incident #42"),
        ("provider.enable", "fault", "resolved"),
    ]


async def test_only_operators_switch_known_providers(api: Api) -> None:
    admin = await login_as(api, "admin")
    user = await sms_login(api.client)
    body = {"enabled": False, "reason": "testing"}
    denied = await api.client.post("/api/v1/admin/providers/local/switch", json=body, headers=user.headers)
    assert denied.status_code == 403
    unknown = await api.client.post("/api/v1/admin/providers/ghost/switch", json=body, headers=admin.headers)
    assert unknown.status_code == 404
    terse = await api.client.post(
        "/api/v1/admin/providers/local/switch", json={"enabled": False, "reason": ""}, headers=admin.headers
    )
    assert terse.status_code == 422
    assert (await _providers(api, admin))["local"]["enabled"] is True


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_switch_reaches_another_process_at_once(api_factory: Any) -> None:
    api_a: Api = await api_factory()
    api_b: Api = await api_factory()
    admin = await login_as(api_a, "admin")
    from wardrobe.modules.providers.switches import disabled_providers

    assert await disabled_providers(api_b.infra.session_factory, api_b.infra.cache) == frozenset()  # cached
    received = api_b.infra.cache.received
    off = await api_a.client.post(
        "/api/v1/admin/providers/local/switch", json={"enabled": False, "reason": "maintenance"}, headers=admin.headers
    )
    assert off.status_code == 200
    await api_b.infra.cache.wait_received(received + 1)
    assert await disabled_providers(api_b.infra.session_factory, api_b.infra.cache) == frozenset({"local"})
