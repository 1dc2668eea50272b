"""The support console's task routes: any user's tasks with their internals (filters, pages, steps,
the quota hold and its ledger rows), cancel with a refund, retry at no charge — money moved once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import balance, make_feature, run_to_end, step, wait_until
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry

ADMIN_TASKS = "/api/v1/admin/tasks"


@pytest.fixture
async def task_api(api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(
        extra_providers=["tests.providers.fault:build"],
        worker_in_process=True,
        task_heartbeat_seconds=0.1,
        task_lease_seconds=5,
    )
    return api


async def _create(api: Api, user: Session, feature: str, key: str) -> str:
    resp = await api.client.post(
        "/api/v1/tasks", json={"feature": feature, "inputs": {"key": key}}, headers=user.headers
    )
    return str(data(resp, 202)["id"])


async def _detail(api: Api, staff: Session, task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = data(await api.client.get(f"{ADMIN_TASKS}/{task_id}", headers=staff.headers))
    return found


async def _ids(api: Api, staff: Session, **query: Any) -> list[str]:
    page = data(await api.client.get(ADMIN_TASKS, params={"limit": 100, **query}, headers=staff.headers))
    return [item["id"] for item in page["items"]]


async def _settlements(api: Api, public_id: str) -> list[str]:
    """The ledger kinds of the task's hold, oldest first."""
    async with unit_of_work(api.infra.session_factory) as db:
        stmt = select(LedgerEntry.kind).where(LedgerEntry.ref == f"task:{public_id}").order_by(LedgerEntry.id)
        rows = await db.scalars(stmt)
        return list(rows)


async def test_filters_pages_and_what_explains_a_task(task_api: Api, fault_vendor: Any) -> None:
    admin = await login_as(task_api, "admin")
    operator = await login_as(task_api, "operator")
    await make_feature(
        task_api, admin, "quick", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    await make_feature(task_api, admin, "vendor", [step("a"), step("b")], {"r": "$steps.b.result"}, cost=2)
    fault_vendor.scenario("fault:bad", fail_code="secret_vendor_message")
    alice, bob = await sms_login(task_api.client), await sms_login(task_api.client)
    started = datetime.now(UTC) - timedelta(seconds=1)
    ok_task = await _create(task_api, alice, "quick", "k1")
    failed = await _create(task_api, alice, "vendor", "bad")
    bobs = await _create(task_api, bob, "vendor", "fine")
    for user, task_id in ((alice, ok_task), (alice, failed), (bob, bobs)):
        await run_to_end(task_api, user, task_id)

    assert await _ids(task_api, operator) == [bobs, failed, ok_task]
    assert await _ids(task_api, operator, user_id=alice.user["id"]) == [failed, ok_task]
    assert await _ids(task_api, operator, status="failed") == [failed]
    assert await _ids(task_api, operator, feature="vendor") == [bobs, failed]
    assert await _ids(task_api, operator, provider="fault") == [bobs, failed]
    assert await _ids(task_api, operator, provider="instant") == [ok_task]
    assert await _ids(task_api, operator, error_code="secret_vendor_message") == [failed]
    assert await _ids(task_api, operator, user_id=bob.user["id"], feature="quick") == []
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert await _ids(task_api, operator, **{"from": started.isoformat(), "to": later}) == [bobs, failed, ok_task]
    assert await _ids(task_api, operator, **{"to": started.isoformat()}) == []
    assert await _ids(task_api, operator, **{"from": later}) == []

    # Keyset pages of one, with a filter, reach every task once.
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1, "provider": "fault", **({"cursor": cursor} if cursor else {})}
        page = data(await task_api.client.get(ADMIN_TASKS, params=params, headers=operator.headers))
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [bobs, failed]

    row = data(await task_api.client.get(ADMIN_TASKS, params={"status": "failed"}, headers=operator.headers))["items"][
        0
    ]
    assert row["user_id"] == alice.user["id"]
    assert (row["feature"], row["quota_cost"], row["refunded"]) == ("vendor", 2, True)
    assert (row["error_code"], row["providers"], row["retry_of"]) == ("secret_vendor_message", ["fault"], None)
    assert row["duration_ms"] >= 0

    detail = await _detail(task_api, operator, failed)
    assert detail["inputs"] == {"key": "bad"}
    [a, b] = detail["steps"]
    assert (a["step_id"], a["status"], a["provider"], a["attempts"]) == ("a", "failed", "fault", 1)
    assert "secret_vendor_message" in a["error"]  # operators see the internal error
    assert (b["step_id"], b["status"], b["provider"]) == ("b", "pending", None)
    assert detail["hold"]["amount"] == 2
    assert detail["hold"]["status"] == "canceled"
    assert detail["hold"]["settled_at"] is not None
    assert [(e["kind"], e["amount"], e["hold_delta"]) for e in detail["ledger"]] == [
        ("reserve", 0, 2),
        ("cancel", 0, -2),
    ]
    assert (detail["retried_by"], detail["actions"]) == (None, [])

    done = await _detail(task_api, operator, ok_task)
    assert (done["status"], done["hold"]["status"]) == ("succeeded", "confirmed")
    assert [(e["kind"], e["amount"]) for e in done["ledger"]] == [("reserve", 0), ("confirm", -1)]
    assert done["outputs"] == [{"name": "r", "value": "k1"}]
    assert done["steps"][0]["vendor_task_id"] is None

    assert (await task_api.client.get(f"{ADMIN_TASKS}/nope", headers=operator.headers)).status_code == 404
    for bad in ({"from": "1700000000"}, {"to": "2026-12-01T00:00:00"}, {"status": "lost"}, {"limit": 0}):
        resp = await task_api.client.get(ADMIN_TASKS, params=bad, headers=operator.headers)
        assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED"), bad


async def test_operator_cancels_a_queued_task_once_with_a_refund(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=False)
    admin, operator = await login_as(api, "admin"), await login_as(api, "operator")
    await make_feature(
        api, admin, "later", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}, cost=3
    )
    user = await sms_login(api.client)
    task_id = await _create(api, user, "later", "k")
    assert await balance(api, user.user["id"]) == (10, 3, 10)

    url = f"{ADMIN_TASKS}/{task_id}/cancel"
    canceled = data(await api.client.post(url, json={"reason": "user asked by phone"}, headers=operator.headers))
    assert (canceled["status"], canceled["refunded"], canceled["hold"]["status"]) == ("canceled", True, "canceled")
    assert [e["kind"] for e in canceled["ledger"]] == ["reserve", "cancel"]
    [action] = canceled["actions"]
    assert action["action"] == "task.cancel"
    assert (action["actor_id"], action["reason"]) == (operator.user["id"], "user asked by phone")
    assert (action["before"], action["after"]) == (
        {"status": "queued"},
        {"status": "canceled", "cancel_requested": True},
    )
    assert await balance(api, user.user["id"]) == (10, 0, 10)

    again = await api.client.post(url, json={"reason": "twice"}, headers=operator.headers)
    assert (again.status_code, again.json()["code"]) == (409, "CONFLICT")
    missing = await api.client.post(f"{ADMIN_TASKS}/nope/cancel", json={"reason": "x?"}, headers=operator.headers)
    assert missing.status_code == 404
    no_reason = await api.client.post(url, json={}, headers=operator.headers)
    assert (no_reason.status_code, no_reason.json()["code"]) == (422, "VALIDATION_FAILED")
    assert await _settlements(api, task_id) == ["reserve", "cancel"]

    audit = data(await api.client.get(f"{ADMIN_TASKS}/{task_id}", headers=operator.headers))["actions"]
    assert [a["action"] for a in audit] == ["task.cancel"]


async def test_operator_and_owner_cancelling_together_refund_once(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=False)
    admin, operator = await login_as(api, "admin"), await login_as(api, "operator")
    await make_feature(
        api, admin, "later", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    user = await sms_login(api.client)
    tasks = [await _create(api, user, "later", f"k{i}") for i in range(5)]
    for task_id in tasks:
        by_operator, by_owner = await asyncio.gather(
            api.client.post(f"{ADMIN_TASKS}/{task_id}/cancel", json={"reason": "race"}, headers=operator.headers),
            api.client.post(f"/api/v1/tasks/{task_id}/cancel", headers=user.headers),
        )
        assert by_operator.status_code in (200, 409)
        assert by_owner.status_code == 200
        assert await _settlements(api, task_id) == ["reserve", "cancel"]
    assert await balance(api, user.user["id"]) == (10, 0, 10)


async def test_operator_stops_a_running_task_and_it_is_refunded_once(task_api: Api, fault_vendor: Any) -> None:
    admin, operator = await login_as(task_api, "admin"), await login_as(task_api, "operator")
    await make_feature(task_api, admin, "long", [step("only", timeout_seconds=30)], {"r": "$steps.only.result"})
    fault_vendor.scenario("fault:stuck", hold=True)
    user = await sms_login(task_api.client)
    task_id = await _create(task_api, user, "long", "stuck")

    async def in_flight() -> bool:
        return bool(fault_vendor.in_flight == 1)

    await wait_until(in_flight)
    url = f"{ADMIN_TASKS}/{task_id}/cancel"
    first, second = await asyncio.gather(
        task_api.client.post(url, json={"reason": "stuck at the vendor"}, headers=operator.headers),
        task_api.client.post(url, json={"reason": "stuck at the vendor"}, headers=operator.headers),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    flagged = (first if first.status_code == 200 else second).json()["data"]
    assert flagged["cancel_requested"] is True
    assert flagged["actions"][0]["before"] == {"status": "running"}
    task = await run_to_end(task_api, user, task_id)
    assert (task["status"], task["refunded"]) == ("canceled", True)
    assert await _settlements(task_api, task_id) == ["reserve", "cancel"]
    assert await balance(task_api, user.user["id"]) == (10, 0, 10)
    late = await task_api.client.post(url, json={"reason": "again"}, headers=operator.headers)
    assert late.status_code == 409


async def test_a_cancel_racing_the_end_of_the_run_settles_once(task_api: Api, fault_vendor: Any) -> None:
    admin, operator = await login_as(task_api, "admin"), await login_as(task_api, "operator")
    await make_feature(task_api, admin, "long", [step("only", timeout_seconds=30)], {"r": "$steps.only.result"})
    user = await sms_login(task_api.client)
    for i in range(3):
        key = f"end{i}"
        fault_vendor.scenario(f"fault:{key}", hold=True)
        task_id = await _create(task_api, user, "long", key)

        async def at_vendor(key: str = key) -> bool:
            return f"fault:{key}" in fault_vendor.in_flight_keys

        await wait_until(at_vendor)

        async def release(key: str = key) -> None:
            fault_vendor.release(f"fault:{key}")

        _, canceled = await asyncio.gather(
            release(),
            task_api.client.post(f"{ADMIN_TASKS}/{task_id}/cancel", json={"reason": "race"}, headers=operator.headers),
        )
        assert canceled.status_code in (200, 409)
        task = await run_to_end(task_api, user, task_id)
        kinds = await _settlements(task_api, task_id)
        if task["status"] == "succeeded":
            assert kinds == ["reserve", "confirm"]
        else:
            assert (task["status"], task["refunded"], kinds) == ("canceled", True, ["reserve", "cancel"])
    charged = sum(1 for t in await _list_of(task_api, operator, user) if t["status"] == "succeeded")
    assert await balance(task_api, user.user["id"]) == (10 - charged, 0, 10 - charged)


async def _list_of(api: Api, staff: Session, user: Session) -> list[dict[str, Any]]:
    page = data(await api.client.get(ADMIN_TASKS, params={"user_id": user.user["id"]}, headers=staff.headers))
    items: list[dict[str, Any]] = page["items"]
    return items


async def test_a_failed_task_is_retried_once_at_no_charge(task_api: Api) -> None:
    admin, operator = await login_as(task_api, "admin"), await login_as(task_api, "operator")
    await make_feature(
        task_api, admin, "quick", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    user = await sms_login(task_api.client)
    switch = "/api/v1/admin/providers/instant/switch"
    data(await task_api.client.post(switch, json={"enabled": False, "reason": "outage"}, headers=operator.headers))
    failed = await _create(task_api, user, "quick", "k")
    assert (await run_to_end(task_api, user, failed))["status"] == "failed"
    assert await balance(task_api, user.user["id"]) == (10, 0, 10)
    data(await task_api.client.post(switch, json={"enabled": True, "reason": "back"}, headers=operator.headers))

    url = f"{ADMIN_TASKS}/{failed}/retry"
    retried = data(await task_api.client.post(url, json={"reason": "outage is over"}, headers=operator.headers), 201)
    assert retried["id"] != failed
    assert (retried["user_id"], retried["feature"], retried["inputs"]) == (user.user["id"], "quick", {"key": "k"})
    assert (retried["quota_cost"], retried["retry_of"], retried["hold"], retried["ledger"]) == (0, failed, None, [])
    assert retried["status"] in ("queued", "running", "succeeded")
    # The owner's own task, run like any other (queued through the outbox), costing nothing.
    task = await run_to_end(task_api, user, retried["id"])
    assert (task["status"], task["quota_cost"], task["refunded"]) == ("succeeded", 0, False)
    assert task["outputs"] == [{"name": "r", "value": "k"}]
    assert await balance(task_api, user.user["id"]) == (10, 0, 10)
    assert await _settlements(task_api, retried["id"]) == []

    original = await _detail(task_api, operator, failed)
    assert original["retried_by"] == retried["id"]
    [action] = original["actions"]
    assert (action["action"], action["reason"], action["after"]) == (
        "task.retry",
        "outage is over",
        {"retried_by": retried["id"]},
    )
    assert await _ids(task_api, operator, user_id=user.user["id"]) == [retried["id"], failed]
    profile = data(await task_api.client.get(f"/api/v1/admin/users/{user.user['id']}", headers=operator.headers))
    assert [(t["id"], t["retry_of"]) for t in profile["tasks"]["recent"]] == [(retried["id"], failed), (failed, None)]

    again = await task_api.client.post(url, json={"reason": "once more"}, headers=operator.headers)
    assert (again.status_code, again.json()["code"]) == (409, "CONFLICT")
    not_failed = await task_api.client.post(
        f"{ADMIN_TASKS}/{retried['id']}/retry", json={"reason": "it worked"}, headers=operator.headers
    )
    assert (not_failed.status_code, not_failed.json()["code"]) == (409, "CONFLICT")


async def test_racing_retries_make_one_task(task_api: Api) -> None:
    admin, operator = await login_as(task_api, "admin"), await login_as(task_api, "operator")
    await make_feature(
        task_api, admin, "quick", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    user = await sms_login(task_api.client)
    switch = "/api/v1/admin/providers/instant/switch"
    data(await task_api.client.post(switch, json={"enabled": False, "reason": "outage"}, headers=operator.headers))
    failed = await _create(task_api, user, "quick", "k")
    assert (await run_to_end(task_api, user, failed))["status"] == "failed"
    data(await task_api.client.post(switch, json={"enabled": True, "reason": "back"}, headers=operator.headers))

    url = f"{ADMIN_TASKS}/{failed}/retry"
    answers = await asyncio.gather(
        *(task_api.client.post(url, json={"reason": f"retry {i}"}, headers=operator.headers) for i in range(4))
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    [made] = [a.json()["data"]["id"] for a in answers if a.status_code == 201]
    assert await _ids(task_api, operator, user_id=user.user["id"]) == [made, failed]
    assert len((await _detail(task_api, operator, failed))["actions"]) == 1
    assert (await run_to_end(task_api, user, made))["status"] == "succeeded"
    assert await balance(task_api, user.user["id"]) == (10, 0, 10)
