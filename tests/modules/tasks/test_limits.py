"""Per-provider concurrency: never more calls in flight at the vendor than the limit, counted
on the vendor's side, with one process and with two worker processes sharing Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import (
    OWN_PROCESSES,
    give_quota,
    make_feature,
    spawn_worker,
    step,
    stop_workers,
    wait_until,
    worker_env,
)
from wardrobe.core.db import unit_of_work
from wardrobe.models import Task


async def _start_tasks(api: Api, count: int, fault_vendor: Any) -> tuple[Any, list[str]]:
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "busy", [step("only", timeout_seconds=60)], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], count)
    keys = [f"n{i}" for i in range(count)]
    for key in keys:
        fault_vendor.scenario(f"fault:{key}", hold=True)
        data(
            await api.client.post(
                "/api/v1/tasks", json={"feature": "busy", "inputs": {"key": key}}, headers=user.headers
            ),
            202,
        )
    return user, keys


async def _succeeded(api: Api) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        return int(await db.scalar(select(func.count()).select_from(Task).where(Task.status == "succeeded")) or 0)


async def test_provider_limit_holds_in_one_process(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(
        extra_providers=["tests.providers.fault:build"],
        worker_in_process=True,
        provider_concurrency={"fault": 2},
        worker_concurrency=8,
    )
    _, keys = await _start_tasks(api, 6, fault_vendor)

    async def two_in_flight() -> bool:
        return bool(fault_vendor.in_flight == 2)

    await wait_until(two_in_flight)
    for key in keys:
        fault_vendor.release(f"fault:{key}")

    async def all_done() -> bool:
        return await _succeeded(api) == 6

    await wait_until(all_done)
    assert fault_vendor.max_in_flight == 2


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_provider_limit_holds_across_two_worker_processes(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    # Each process runs at most 2 tasks at once, so 3 in flight means both are at work.
    env = worker_env(api, tmp_path, provider_concurrency=json.dumps({"fault": 3}), worker_concurrency="2")
    workers = [spawn_worker(env, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        _, keys = await _start_tasks(api, 10, fault_vendor)

        async def three_in_flight() -> bool:
            return bool(fault_vendor.in_flight == 3)

        await wait_until(three_in_flight, within=60)
        async with unit_of_work(api.infra.session_factory) as db:
            owners = set(await db.scalars(select(Task.lease_owner).where(Task.status == "running")))
        pids = {owner.split(":")[1] for owner in owners if owner}
        assert pids == {str(w.pid) for w in workers}
        for key in keys:
            fault_vendor.release(f"fault:{key}")

        async def all_done() -> bool:
            return await _succeeded(api) == 10

        await wait_until(all_done, within=60)
        assert fault_vendor.max_in_flight == 3
    finally:
        stop_workers(workers)


async def _statuses(api: Api, user_id: int) -> list[str]:
    async with unit_of_work(api.infra.session_factory) as db:
        return list(await db.scalars(select(Task.status).where(Task.user_id == user_id).order_by(Task.id)))


async def test_user_limit_keeps_the_rest_queued_until_a_place_frees(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D5: one user runs at most N tasks at once, the others wait queued and start as places free
    (without waiting for the reaper); another user is not held up by them."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(
        extra_providers=["tests.providers.fault:build"],
        worker_in_process=True,
        worker_concurrency=8,
        user_max_running_tasks=1,
        task_requeue_after_seconds=3600,  # only the freed place can start the queued ones
    )
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "busy", [step("only", timeout_seconds=60)], {"r": "$steps.only.result"})
    heavy, light = await sms_login(api.client), await sms_login(api.client)
    await give_quota(api, heavy.user["id"], 3)
    await give_quota(api, light.user["id"], 1)
    jobs = [(heavy, "heavy-0"), (heavy, "heavy-1"), (heavy, "heavy-2"), (light, "light-0")]
    for user, key in jobs:
        fault_vendor.scenario(f"fault:{key}", hold=True)
        body = {"feature": "busy", "inputs": {"key": key}}
        data(await api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)

    def heavy_in_flight() -> set[str]:
        return {k for k in fault_vendor.in_flight_keys if k.startswith("fault:heavy")}

    async def both_users_at_the_vendor() -> bool:
        # Which of the heavy user's tasks takes its one place is a race between the workers.
        return "fault:light-0" in fault_vendor.in_flight_keys and len(heavy_in_flight()) == 1

    await wait_until(both_users_at_the_vendor)
    [first] = heavy_in_flight()
    assert sorted(await _statuses(api, heavy.user["id"])) == ["queued", "queued", "running"]

    fault_vendor.release(first)

    async def second_started() -> bool:
        return len(heavy_in_flight() - {first}) == 1

    await wait_until(second_started)
    assert sorted(await _statuses(api, heavy.user["id"])) == ["queued", "running", "succeeded"]
    for _, key in jobs:
        fault_vendor.release(f"fault:{key}")

    async def all_done() -> bool:
        return await _succeeded(api) == 4

    await wait_until(all_done)
    assert _most_at_once(fault_vendor, "fault:heavy") == 1


def _most_at_once(vendor: Any, prefix: str) -> int:
    """The most calls with keys starting with ``prefix`` the vendor ever had in flight together."""
    return max(sum(1 for key in keys if key.startswith(prefix)) for keys in vendor.overlaps)


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_user_limit_holds_across_two_worker_processes(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    env = worker_env(
        api,
        tmp_path,
        provider_concurrency="{}",
        worker_concurrency="4",
        user_max_running_tasks="2",
        task_requeue_after_seconds="3600",
    )
    workers = [spawn_worker(env, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        _, keys = await _start_tasks(api, 8, fault_vendor)

        async def two_in_flight() -> bool:
            return bool(fault_vendor.in_flight == 2)

        await wait_until(two_in_flight, within=60)
        for key in keys:
            fault_vendor.release(f"fault:{key}")

        async def all_done() -> bool:
            return await _succeeded(api) == 8

        await wait_until(all_done, within=60)
        assert _most_at_once(fault_vendor, "fault:n") == 2
    finally:
        stop_workers(workers)


async def test_provider_request_rate_is_kept(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D5: calls to a provider start no faster than its rate, counted where they arrive."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(
        extra_providers=["tests.providers.fault:build"],
        worker_in_process=True,
        worker_concurrency=8,
        user_max_running_tasks=0,
        provider_concurrency={},
        provider_rate_limits={"fault": "2/second"},
    )
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "quick", [step("only", timeout_seconds=30)], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 6)
    for i in range(6):
        body = {"feature": "quick", "inputs": {"key": f"r{i}"}}
        data(await api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)

    async def all_done() -> bool:
        return await _succeeded(api) == 6

    await wait_until(all_done)
    times = sorted(fault_vendor.arrivals)
    assert len(times) == 6
    # 2 per second: calls 3 and 5 wait for the window; unlimited, all six arrive within ~0.1 s.
    # The bounds leave 0.4 s for delivery jitter between taking the window and arriving.
    assert times[-1] - times[0] > 1.6
    assert all(times[i + 2] - times[i] > 0.6 for i in range(len(times) - 2))
