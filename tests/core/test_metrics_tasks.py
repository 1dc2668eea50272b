"""The task and engine metrics move by what really happened: tasks run through the in-process engine
on the fault vendor (success, retries, fallback, failure, cancel while queued), provider slots held
while a call runs, the circuit breaker's gauge, and quota operations counted only once committed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import make_feature, run_to_end, step, wait_until
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerKind
from wardrobe.modules.billing import quota
from wardrobe.modules.providers.health import CircuitBreaker


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Deltas:
    """Samples read now, compared with the same samples read later (the registry is process-wide)."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [value(name, **labels) for name, labels in samples]

    def now(self) -> list[float]:
        return [value(name, **labels) - was for (name, labels), was in zip(self.samples, self.before, strict=True)]


def sample(name: str, **labels: str) -> tuple[str, dict[str, str]]:
    return name, labels


@pytest.fixture
async def task_api(api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(
        extra_providers=["tests.providers.fault:build"],
        worker_in_process=True,
        task_heartbeat_seconds=0.1,
        task_lease_seconds=5,
        provider_concurrency={"fault": 2},
    )
    return api


@pytest.fixture
async def admin(task_api: Api) -> Session:
    return await login_as(task_api, "admin")


async def _create(api: Api, user: Session, feature: str, key: str) -> str:
    resp = await api.client.post(
        "/api/v1/tasks", json={"feature": feature, "inputs": {"key": key}}, headers=user.headers
    )
    public_id: str = data(resp, 202)["id"]
    return public_id


async def test_a_task_that_succeeds_moves_every_task_step_call_and_quota_metric(task_api: Api, admin: Session) -> None:
    await make_feature(task_api, admin, "metered", [step("only")], {"r": "$steps.only.result"}, cost=3)
    user = await sms_login(task_api.client)
    moved = Deltas(
        sample("wardrobe_tasks_created_total", feature="metered"),
        sample("wardrobe_tasks_finished_total", feature="metered", status="succeeded"),
        sample("wardrobe_task_duration_seconds_count", feature="metered"),
        sample("wardrobe_task_queue_wait_seconds_count", feature="metered"),
        sample("wardrobe_step_duration_seconds_count", provider="fault", action="work"),
        sample("wardrobe_provider_calls_total", provider="fault", account="-", outcome="ok"),
        sample("wardrobe_provider_call_duration_seconds_count", provider="fault"),
        sample("wardrobe_quota_operations_total", operation="reserve"),
        sample("wardrobe_quota_units_total", operation="reserve"),
        sample("wardrobe_quota_operations_total", operation="confirm"),
        sample("wardrobe_quota_units_total", operation="confirm"),
        sample("wardrobe_step_retries_total", provider="fault", action="work"),
    )
    task = await run_to_end(task_api, user, await _create(task_api, user, "metered", "m1"))
    assert task["status"] == "succeeded"
    assert moved.now() == [1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 3, 0]
    # The slot taken for the call is given back: nothing of this process holds or waits for one.
    assert value("wardrobe_provider_slots_in_use", provider="fault") == 0
    assert value("wardrobe_provider_slots_waiting", provider="fault") == 0


async def test_retries_fallback_and_failure_are_counted_per_provider(
    task_api: Api, admin: Session, fault_vendor: Any
) -> None:
    await make_feature(
        task_api,
        admin,
        "shaky",
        [step("only", provider=["fault", "fault2"], retries=1, backoff_seconds=0.01)],
        {"r": "$steps.only.result"},
        cost=2,
    )
    fault_vendor.scenario("fault:s1", fail_times=5)  # 5xx: retried, then given up on
    fault_vendor.scenario("fault2:s1", fail_code="model_rejected")  # a permanent no: not retried
    user = await sms_login(task_api.client)
    moved = Deltas(
        sample("wardrobe_step_retries_total", provider="fault", action="work"),
        sample("wardrobe_step_retries_total", provider="fault2", action="work"),
        sample("wardrobe_step_fallbacks_total", action="work", provider="fault"),
        sample("wardrobe_step_fallbacks_total", action="work", provider="fault2"),
        sample("wardrobe_provider_calls_total", provider="fault", account="-", outcome="error"),
        sample("wardrobe_provider_calls_total", provider="fault2", account="-", outcome="error"),
        sample("wardrobe_provider_calls_total", provider="fault", account="-", outcome="ok"),
        sample("wardrobe_step_duration_seconds_count", provider="fault", action="work"),
        sample("wardrobe_step_duration_seconds_count", provider="fault2", action="work"),
        sample("wardrobe_tasks_finished_total", feature="shaky", status="failed"),
        sample("wardrobe_tasks_finished_total", feature="shaky", status="succeeded"),
        sample("wardrobe_quota_operations_total", operation="cancel"),
        sample("wardrobe_quota_units_total", operation="cancel"),
    )
    task = await run_to_end(task_api, user, await _create(task_api, user, "shaky", "s1"))
    assert task["status"] == "failed"
    assert moved.now() == [1, 0, 1, 0, 2, 1, 0, 1, 1, 1, 0, 1, 2]


async def test_a_task_canceled_while_queued_is_finished_canceled(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    # Nobody runs its tasks: they stay queued.
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    await make_feature(api, await login_as(api, "admin"), "parked", [step("only")], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    moved = Deltas(
        sample("wardrobe_tasks_created_total", feature="parked"),
        sample("wardrobe_tasks_finished_total", feature="parked", status="canceled"),
        sample("wardrobe_task_duration_seconds_count", feature="parked"),
        sample("wardrobe_task_queue_wait_seconds_count", feature="parked"),
        sample("wardrobe_quota_operations_total", operation="cancel"),
    )
    public_id = await _create(api, user, "parked", "p1")
    canceled = data(await api.client.post(f"/api/v1/tasks/{public_id}/cancel", headers=user.headers))
    assert canceled["status"] == "canceled"
    assert moved.now() == [1, 1, 1, 0, 1]


async def test_quota_operations_count_only_what_commits(api: Api) -> None:
    user = await sms_login(api.client)
    uid = int(user.user["id"])
    moved = Deltas(
        sample("wardrobe_quota_operations_total", operation="reserve"),
        sample("wardrobe_quota_units_total", operation="reserve"),
        sample("wardrobe_quota_operations_total", operation="grant"),
        sample("wardrobe_quota_operations_total", operation="adjust"),
    )

    async def fails_after_the_hold() -> None:
        async with unit_of_work(api.infra.session_factory) as db:
            await quota.reserve(db, uid, 4, ref="metrics:rolled-back", ttl=timedelta(minutes=5))
            raise RuntimeError("the request failed after the hold")

    with pytest.raises(RuntimeError):
        await fails_after_the_hold()
    assert moved.now() == [0, 0, 0, 0]
    async with unit_of_work(api.infra.session_factory) as db:
        await quota.credit(db, uid, 7, kind=LedgerKind.GRANT, ref="metrics:grant")
        await quota.credit(db, uid, -2, kind=LedgerKind.ADMIN_ADJUSTMENT, ref="metrics:adjust")
        await quota.reserve(db, uid, 4, ref="metrics:kept", ttl=timedelta(minutes=5))
    assert moved.now() == [1, 4, 1, 1]


async def test_slots_in_use_while_a_call_runs(task_api: Api, admin: Session, fault_vendor: Any) -> None:
    await make_feature(task_api, admin, "held", [step("only")], {"r": "$steps.only.result"})
    fault_vendor.scenario("fault:h1", hold=True)
    user = await sms_login(task_api.client)
    before = value("wardrobe_provider_slots_in_use", provider="fault")
    public_id = await _create(task_api, user, "held", "h1")

    async def holding() -> bool:
        return value("wardrobe_provider_slots_in_use", provider="fault") == before + 1

    await wait_until(holding)
    fault_vendor.release("fault:h1")
    assert (await run_to_end(task_api, user, public_id))["status"] == "succeeded"
    assert value("wardrobe_provider_slots_in_use", provider="fault") == before


def test_the_circuit_gauge_follows_the_breaker() -> None:
    now = [0.0]
    breaker = CircuitBreaker(min_calls=2, open_seconds=10, clock=lambda: now[0])
    breaker.record("metrics-vendor", True)
    assert value("wardrobe_provider_circuit_open", provider="metrics-vendor") == 0
    breaker.record("metrics-vendor", False)
    breaker.record("metrics-vendor", False)
    assert not breaker.allow("metrics-vendor")
    assert value("wardrobe_provider_circuit_open", provider="metrics-vendor") == 1
    now[0] = 11.0
    assert breaker.allow("metrics-vendor")  # the half-open probe
    breaker.record("metrics-vendor", True)
    assert value("wardrobe_provider_circuit_open", provider="metrics-vendor") == 0
