"""The task path end to end: catalog, quota saga, engine, retries, fallback, fork/join, cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import balance, give_quota, internal_id, make_feature, run_to_end, step, wait_until
from wardrobe.core.db import unit_of_work
from wardrobe.models import TaskStep


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


@pytest.fixture
async def admin(task_api: Api) -> Session:
    return await login_as(task_api, "admin")


async def _create(api: Api, user: Session, feature: str, key: str, idem: str | None = None) -> Any:
    headers = {**user.headers, **({"Idempotency-Key": idem} if idem else {})}
    return await api.client.post("/api/v1/tasks", json={"feature": feature, "inputs": {"key": key}}, headers=headers)


async def test_fork_join_pipeline_succeeds_and_charges_once(task_api: Api, admin: Session, fault_vendor: Any) -> None:
    await make_feature(
        task_api,
        admin,
        "combo",
        [
            step("first"),
            {
                "id": "both",
                "type": "fork",
                "max_parallel": 2,
                "branches": [
                    [step("left")],
                    [step("right", action="job", kind="async_api", poll_interval_seconds=0.05)],
                ],
            },
            step("last"),
        ],
        {"a": "$steps.left.result", "b": "$steps.right.result"},
        cost=2,
    )
    user = await sms_login(task_api.client)
    created = data(await _create(task_api, user, "combo", "k1"), 202)
    assert created["status"] in ("queued", "running", "succeeded")
    assert [s["id"] for s in created["steps"]] == ["first", "left", "right", "last"]
    task = await run_to_end(task_api, user, created["id"])
    assert task["status"] == "succeeded"
    assert task["progress"] == 100
    assert {s["status"] for s in task["steps"]} == {"succeeded"}
    assert {o["name"]: o["value"] for o in task["outputs"]} == {"a": "done:fault:k1", "b": "job:fault:k1"}
    assert await balance(task_api, user.user["id"]) == (10 - 2, 0, 10 - 2)
    # Only the public fields: no vendor job ids, providers, leases or raw errors.
    assert set(task) == {
        "id",
        "feature",
        "status",
        "progress",
        "steps",
        "outputs",
        "error",
        "quota_cost",
        "refunded",
        "queue_position",
        "created_at",
        "updated_at",
        "files_purged_at",
    }
    assert "fault" not in str(task["steps"])


async def test_retries_then_success(task_api: Api, admin: Session, fault_vendor: Any) -> None:
    await make_feature(
        task_api, admin, "flaky", [step("only", retries=2, backoff_seconds=0.01)], {"r": "$steps.only.result"}
    )
    fault_vendor.scenario("fault:k2", fail_times=2)
    user = await sms_login(task_api.client)
    task = await run_to_end(task_api, user, data(await _create(task_api, user, "flaky", "k2"), 202)["id"])
    assert task["status"] == "succeeded"
    assert fault_vendor.calls["fault:k2"] == 3


async def test_fallback_to_the_second_provider(task_api: Api, admin: Session, fault_vendor: Any) -> None:
    await make_feature(
        task_api, admin, "fallback", [step("only", provider=["fault", "fault2"])], {"r": "$steps.only.result"}
    )
    fault_vendor.scenario("fault:k3", fail_code="model_rejected")
    user = await sms_login(task_api.client)
    task = await run_to_end(task_api, user, data(await _create(task_api, user, "fallback", "k3"), 202)["id"])
    assert task["status"] == "succeeded"
    assert task["outputs"][0]["value"] == "done:fault2:k3"
    async with unit_of_work(task_api.infra.session_factory) as db:
        row = (await db.scalars(select(TaskStep).where(TaskStep.step_id == "only"))).one()
    assert row.provider == "fault2"


async def test_failure_stops_the_pipeline_and_refunds_exactly_once(
    task_api: Api, admin: Session, fault_vendor: Any
) -> None:
    await make_feature(task_api, admin, "doomed", [step("a"), step("b"), step("c")], {"r": "$steps.c.result"}, cost=3)
    fault_vendor.scenario("fault:k4", fail_code="secret_vendor_message")
    user = await sms_login(task_api.client)
    public_id = data(await _create(task_api, user, "doomed", "k4"), 202)["id"]
    task = await run_to_end(task_api, user, public_id)
    assert task["status"] == "failed"
    assert task["refunded"] is True
    assert task["error"] == {"code": "processing_failed", "message": "处理失败"}
    # The same task read in English, in its detail and in the list (one more lookup per failed row).
    english = {**user.headers, "Accept-Language": "en"}
    detail = data(await task_api.client.get(f"/api/v1/tasks/{public_id}", headers=english))
    assert detail["error"] == {"code": "processing_failed", "message": "Processing failed"}
    listed = data(await task_api.client.get("/api/v1/tasks", headers=english))["items"]
    assert [t["error"] for t in listed if t["id"] == public_id] == [detail["error"]]
    assert "secret_vendor_message" not in str(task)
    assert [s["status"] for s in task["steps"]] == ["failed", "pending", "pending"]
    assert fault_vendor.calls["fault:k4"] == 1  # b and c never ran
    assert await balance(task_api, user.user["id"]) == (10, 0, 10)
    ledger = data(await task_api.client.get("/api/v1/billing/ledger", headers=user.headers))["items"]
    assert [i["kind"] for i in ledger] == ["cancel", "reserve", "grant"]
    # Running it again (a duplicate message) changes nothing.
    assert await task_api.infra.runtime.engine.run(await internal_id(task_api, public_id)) is None
    assert await balance(task_api, user.user["id"]) == (10, 0, 10)


async def test_step_timeout_fails_the_task(task_api: Api, admin: Session, fault_vendor: Any) -> None:
    await make_feature(task_api, admin, "slow", [step("only", timeout_seconds=0.3)], {"r": "$steps.only.result"})
    fault_vendor.scenario("fault:k5", hold=True)
    user = await sms_login(task_api.client)
    task = await run_to_end(task_api, user, data(await _create(task_api, user, "slow", "k5"), 202)["id"])
    assert task["status"] == "failed"
    assert task["error"]["code"] == "timeout"
    assert task["refunded"] is True


async def test_cancel_mid_run_refunds_once(task_api: Api, admin: Session, fault_vendor: Any) -> None:
    await make_feature(task_api, admin, "long", [step("only", timeout_seconds=30)], {"r": "$steps.only.result"})
    fault_vendor.scenario("fault:k6", hold=True)
    user = await sms_login(task_api.client)
    public_id = data(await _create(task_api, user, "long", "k6"), 202)["id"]

    async def in_flight() -> bool:
        return bool(fault_vendor.in_flight == 1)

    await wait_until(in_flight)
    first, second = await asyncio.gather(
        task_api.client.post(f"/api/v1/tasks/{public_id}/cancel", headers=user.headers),
        task_api.client.post(f"/api/v1/tasks/{public_id}/cancel", headers=user.headers),
    )
    assert first.status_code == second.status_code == 200
    task = await run_to_end(task_api, user, public_id)
    assert task["status"] == "canceled"
    assert task["refunded"] is True
    assert await balance(task_api, user.user["id"]) == (10, 0, 10)
    ledger = data(await task_api.client.get("/api/v1/billing/ledger", headers=user.headers))["items"]
    assert [i["kind"] for i in ledger].count("cancel") == 1


async def test_cancel_of_a_queued_task_is_immediate(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "later", [step("only")], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    created = data(await _create(api, user, "later", "k7"), 202)
    assert created["status"] == "queued"
    assert created["queue_position"] == 0
    assert await balance(api, user.user["id"]) == (10, 1, 10)
    canceled = data(await api.client.post(f"/api/v1/tasks/{created['id']}/cancel", headers=user.headers))
    assert (canceled["status"], canceled["refunded"]) == ("canceled", True)
    assert await balance(api, user.user["id"]) == (10, 0, 10)
    again = data(await api.client.post(f"/api/v1/tasks/{created['id']}/cancel", headers=user.headers))
    assert again["status"] == "canceled"
    assert await balance(api, user.user["id"]) == (10, 0, 10)


async def test_200_concurrent_creates_on_a_balance_of_50(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=False, free_grant_quota=0, db_pool_size=30)
    admin = await login_as(api, "admin")
    await make_feature(
        api, admin, "cheap", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 50)
    results = await asyncio.gather(*(_create(api, user, "cheap", f"c{i}") for i in range(200)))
    codes = [r.status_code for r in results]
    assert codes.count(202) == 50
    assert codes.count(402) == 150
    assert {r.json()["code"] for r in results if r.status_code == 402} == {"QUOTA_INSUFFICIENT"}
    assert await balance(api, user.user["id"]) == (50, 50, 50)
    page = data(await api.client.get("/api/v1/tasks", params={"limit": 100}, headers=user.headers))
    assert len(page["items"]) == 50


async def test_50_concurrent_identical_idempotency_keys_make_one_task(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=False, db_pool_size=30)
    admin = await login_as(api, "admin")
    await make_feature(
        api, admin, "idem", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    user = await sms_login(api.client)
    results = await asyncio.gather(*(_create(api, user, "idem", "same", idem="key-12345678") for _ in range(50)))
    ids = {data(r, 202)["id"] for r in results}
    assert len(ids) == 1
    assert await balance(api, user.user["id"]) == (10, 1, 10)
    resp = await _create(api, user, "idem", "different", idem="key-12345678")
    assert (resp.status_code, resp.json()["code"]) == (409, "IDEMPOTENCY_CONFLICT")


async def test_bad_requests_lose_nothing(task_api: Api, admin: Session) -> None:
    await make_feature(
        task_api,
        admin,
        "guarded",
        [step("only", provider="instant", action="passthrough")],
        {"r": "$steps.only.key"},
        cost=20,
    )
    user = await sms_login(task_api.client)
    resp = await task_api.client.post(
        "/api/v1/tasks", json={"feature": "guarded", "inputs": {"key": 5, "x": 1}}, headers=user.headers
    )
    assert resp.status_code == 422
    assert {i["field"] for i in resp.json()["data"]} == {"inputs.key", "inputs.x"}
    resp = await _create(task_api, user, "guarded", "k")
    assert (resp.status_code, resp.json()["code"]) == (402, "QUOTA_INSUFFICIENT")
    resp = await _create(task_api, user, "nope", "k")
    assert (resp.status_code, resp.json()["code"]) == (403, "FEATURE_UNAVAILABLE")
    assert await balance(task_api, user.user["id"]) == (10, 0, 10)
    other = await sms_login(task_api.client)
    await give_quota(task_api, other.user["id"], 100)
    mine = data(await _create(task_api, other, "guarded", "k"), 202)["id"]
    resp = await task_api.client.get(f"/api/v1/tasks/{mine}", headers=user.headers)
    assert resp.status_code == 404
    resp = await task_api.client.post(f"/api/v1/tasks/{mine}/cancel", headers=user.headers)
    assert resp.status_code == 404


async def test_whitelist_and_disabled_features(task_api: Api, admin: Session) -> None:
    user = await sms_login(task_api.client)
    await make_feature(
        task_api,
        admin,
        "private",
        [step("only", provider="instant", action="passthrough")],
        {"r": "$steps.only.key"},
        access_scope="whitelist",
        allowed_accounts=[user.user["id"]],
    )
    other = await sms_login(task_api.client)
    keys = [f["key"] for f in data(await task_api.client.get("/api/v1/features", headers=user.headers))]
    assert "private" in keys
    keys = [f["key"] for f in data(await task_api.client.get("/api/v1/features", headers=other.headers))]
    assert "private" not in keys
    resp = await _create(task_api, other, "private", "k")
    assert resp.json()["code"] == "FEATURE_UNAVAILABLE"


@pytest.mark.parametrize(
    ("definition", "needle"),
    [
        ({"steps": [step("a", provider="ghost")], "outputs": {"r": "$steps.a.result"}}, "unknown provider"),
        ({"steps": [step("a", provider="instant", action="explode")], "outputs": {"r": "$steps.a.x"}}, "no action"),
        (
            {
                "steps": [step("a", provider="instant", action="passthrough", kind="async_api")],
                "outputs": {"r": "$steps.a.x"},
            },
            "cannot run async_api",
        ),
        (
            {"steps": [step("a", inputs={"x": "$steps.b.y"}), step("b")], "outputs": {"r": "$steps.b.y"}},
            "has not run yet",
        ),
        ({"steps": [step("a"), step("a")], "outputs": {"r": "$steps.a.y"}}, "used twice"),
        ({"steps": [step("a")], "outputs": {"r": "$steps.zzz.y"}}, "must refer"),
    ],
)
async def test_invalid_pipelines_are_refused_when_saved(
    task_api: Api, admin: Session, definition: dict[str, Any], needle: str
) -> None:
    resp = await task_api.client.post(
        "/api/v1/admin/pipelines",
        json={"key": "bad", "definition": definition},
        headers={**admin.headers, "Accept-Language": "en"},
    )
    assert resp.status_code == 422
    assert needle in resp.text


async def test_sweeper_keeps_holds_of_live_tasks_and_frees_orphaned_ones(api_factory: Any) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from wardrobe.models import QuotaHold, Task
    from wardrobe.models.base import utcnow
    from wardrobe.worker.scheduler import release_expired_holds

    api: Api = await api_factory(worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(
        api, admin, "swept", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    user = await sms_login(api.client)
    public_id = data(await _create(api, user, "swept", "s1"), 202)["id"]
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(QuotaHold).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert await release_expired_holds(api.infra) == 0  # still queued: its worker will settle it
    assert await balance(api, user.user["id"]) == (10, 1, 10)
    async with unit_of_work(api.infra.session_factory) as db:
        # A task that ended without settling (e.g. edited by hand): nothing can settle it any more.
        await db.execute(update(Task).where(Task.public_id == public_id).values(status="failed"))
    assert await release_expired_holds(api.infra) == 1
    assert await release_expired_holds(api.infra) == 0
    assert await balance(api, user.user["id"]) == (10, 0, 10)


async def test_an_open_circuit_sends_work_straight_to_the_fallback(
    task_api: Api, admin: Session, fault_vendor: Any
) -> None:
    await make_feature(
        task_api, admin, "resilient", [step("only", provider=["fault", "fault2"])], {"r": "$steps.only.result"}
    )
    user = await sms_login(task_api.client)
    await give_quota(task_api, user.user["id"], 20)
    for i in range(6):
        fault_vendor.scenario(f"fault:b{i}", fail_times=1)  # one 5xx each: the provider is unwell
        task = await run_to_end(task_api, user, data(await _create(task_api, user, "resilient", f"b{i}"), 202)["id"])
        assert task["outputs"][0]["value"] == f"done:fault2:b{i}"
    calls_before = sum(n for key, n in fault_vendor.calls.items() if key.startswith("fault:"))
    task = await run_to_end(task_api, user, data(await _create(task_api, user, "resilient", "b9"), 202)["id"])
    assert task["outputs"][0]["value"] == "done:fault2:b9"
    assert sum(n for key, n in fault_vendor.calls.items() if key.startswith("fault:")) == calls_before
    providers = {
        p["slug"]: p for p in data(await task_api.client.get("/api/v1/admin/providers", headers=admin.headers))
    }
    assert providers["fault"]["health"]["state"] == "down"
    assert providers["fault2"]["health"]["state"] == "up"
    assert providers["local"]["concurrency_limit"] == 2


async def test_a_broken_provider_is_not_retried_and_opens_its_circuit(
    task_api: Api, admin: Session, fault_vendor: Any
) -> None:
    """A broken account (bad key, no funds) is the provider failing, not the input: the step falls
    back at once without retries, and the breaker counts it until the provider is taken out."""
    await make_feature(
        task_api,
        admin,
        "keyless",
        [step("only", provider=["fault", "fault2"], retries=2, backoff_seconds=0.01)],
        {"r": "$steps.only.result"},
    )
    user = await sms_login(task_api.client)
    await give_quota(task_api, user.user["id"], 20)
    for i in range(6):
        fault_vendor.scenario(f"fault:k{i}", fail_code="provider_broken")
        task = await run_to_end(task_api, user, data(await _create(task_api, user, "keyless", f"k{i}"), 202)["id"])
        assert task["outputs"][0]["value"] == f"done:fault2:k{i}"
        assert fault_vendor.calls[f"fault:k{i}"] <= 1  # never retried on the broken provider
    providers = {
        p["slug"]: p for p in data(await task_api.client.get("/api/v1/admin/providers", headers=admin.headers))
    }
    assert providers["fault"]["health"]["state"] == "down"
