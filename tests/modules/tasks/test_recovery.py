"""A worker that dies mid-step loses nothing: another one resumes from the persisted state,
re-attaches to the vendor job instead of submitting again, and settles the quota exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import (
    OWN_PROCESSES,
    balance,
    give_quota,
    internal_id,
    make_feature,
    spawn_worker,
    step,
    stop_workers,
    wait_until,
    worker_env,
)
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, Task, TaskStep
from wardrobe.models.base import utcnow
from wardrobe.modules.pipeline.config import EngineConfig
from wardrobe.modules.pipeline.engine import PipelineEngine
from wardrobe.modules.providers.slots import MemorySlots


async def _queue(api: Api, user: Session, feature: str, key: str) -> int:
    created = data(
        await api.client.post("/api/v1/tasks", json={"feature": feature, "inputs": {"key": key}}, headers=user.headers),
        202,
    )
    return await internal_id(api, created["id"])


def _vendor_job_recorded(api: Api, task_id: int) -> Callable[[], Awaitable[bool]]:
    """A condition: the ``render`` step has stored its vendor job id (it was submitted)."""

    async def recorded() -> bool:
        async with unit_of_work(api.infra.session_factory) as db:
            row = await db.scalar(select(TaskStep).where(TaskStep.task_id == task_id, TaskStep.step_id == "render"))
        return row is not None and row.vendor_task_id is not None

    return recorded


async def _confirms(api: Api, user_id: int) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        return int(
            await db.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.user_id == user_id, LedgerEntry.kind == "confirm")
            )
            or 0
        )


async def test_resumed_async_step_reattaches_by_vendor_id(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(
        api,
        admin,
        "vendorjob",
        [
            step("prep", inputs={"key": "prep"}),
            step("render", action="job", kind="async_api", poll_interval_seconds=0.05, timeout_seconds=60),
        ],
        {"r": "$steps.render.result"},
    )
    fault_vendor.scenario("fault:r1", hold=True)
    user = await sms_login(api.client)
    task_id = await _queue(api, user, "vendorjob", "r1")

    slow = EngineConfig(lease_seconds=60, heartbeat_seconds=60)
    first = PipelineEngine(api.infra.session_factory, api.infra.providers, config=slow, worker_id="worker-a")
    run = asyncio.create_task(first.run(task_id))

    await wait_until(_vendor_job_recorded(api, task_id))
    second = PipelineEngine(api.infra.session_factory, api.infra.providers, config=slow, worker_id="worker-b")
    assert await second.run(task_id) is None  # the lease is live: nobody else may run it
    run.cancel()  # the worker stops mid-job: no terminal state; it hands the task back
    with pytest.raises(asyncio.CancelledError):
        await run
    async with unit_of_work(api.infra.session_factory) as db:
        left = await db.get(Task, task_id)
        assert left is not None
        assert left.status == "running"
        assert left.lease_expires_at is not None
        assert left.lease_expires_at <= utcnow()  # 60 s lease ended at once, not left to run out
    fault_vendor.release("fault:r1")
    assert await second.run(task_id) == "succeeded"
    assert fault_vendor.submissions["fault:r1"] == 1  # re-attached, never re-submitted
    assert fault_vendor.calls["fault:prep"] == 1  # the finished step was not run again
    assert fault_vendor.calls["fault:r1"] == 1  # render's one submit
    assert await _confirms(api, user.user["id"]) == 1
    assert await balance(api, user.user["id"]) == (9, 0, 9)


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_sigkilled_worker_process_is_replaced_without_double_submit_or_charge(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(
        api,
        admin,
        "durable",
        [
            step("render", action="job", kind="async_api", poll_interval_seconds=0.05, timeout_seconds=120),
        ],
        {"r": "$steps.render.result"},
    )
    fault_vendor.scenario("fault:d1", hold=True)
    env = worker_env(
        api, tmp_path, task_lease_seconds="2", task_heartbeat_seconds="0.3", task_reap_interval_seconds="0.5"
    )
    workers = [spawn_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        user = await sms_login(api.client)
        task_id = await _queue(api, user, "durable", "d1")

        await wait_until(_vendor_job_recorded(api, task_id), within=60)
        async with unit_of_work(api.infra.session_factory) as db:
            owner = await db.scalar(select(Task.lease_owner).where(Task.id == task_id))
        assert owner is not None
        victim = next(w for w in workers if f":{w.pid}:" in owner)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        survivor = next(w for w in workers if w is not victim)

        async def taken_over() -> bool:
            async with unit_of_work(api.infra.session_factory) as db:
                now_owner = await db.scalar(select(Task.lease_owner).where(Task.id == task_id))
            return now_owner is not None and f":{survivor.pid}:" in now_owner

        await wait_until(taken_over, within=60)
        fault_vendor.release("fault:d1")

        async def finished() -> bool:
            async with unit_of_work(api.infra.session_factory) as db:
                status = await db.scalar(select(Task.status).where(Task.id == task_id))
            return status == "succeeded"

        await wait_until(finished, within=60)
        assert fault_vendor.submissions["fault:d1"] == 1
        assert await _confirms(api, user.user["id"]) == 1
        assert await balance(api, user.user["id"]) == (9, 0, 9)
    finally:
        stop_workers(workers)


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_sigterm_hands_a_running_task_back_at_once(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Graceful shutdown: the stopping worker interrupts its run after the grace period and ends its
    lease, so the other worker resumes the task long before the lease (120 s) would have run out;
    the user is charged once. The interrupted call is still running at the vendor (this vendor, like
    many, finishes a request whose caller left), so its slot stays taken until the call's deadline:
    the resumed run calls on the second slot, and the vendor never sees more calls than the limit."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "steady", [step("only", timeout_seconds=120)], {"r": "$steps.only.result"})
    fault_vendor.scenario("fault:g1", hold=True)
    env = worker_env(
        api,
        tmp_path,
        task_lease_seconds="120",
        task_heartbeat_seconds="0.5",
        shutdown_grace_seconds="1",
        provider_concurrency='{"fault": 2}',
    )
    workers = [spawn_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        user = await sms_login(api.client)
        task_id = await _queue(api, user, "steady", "g1")

        async def at_vendor() -> bool:
            return bool(fault_vendor.in_flight_keys["fault:g1"] == 1)

        await wait_until(at_vendor, within=60)
        async with unit_of_work(api.infra.session_factory) as db:
            owner = await db.scalar(select(Task.lease_owner).where(Task.id == task_id))
        assert owner is not None
        leaving = next(w for w in workers if f":{w.pid}:" in owner)
        staying = next(w for w in workers if w is not leaving)
        leaving.send_signal(signal.SIGTERM)
        assert leaving.wait(timeout=30) == 0  # a clean exit, within the grace and the hand-back
        said = (tmp_path / f"worker{workers.index(leaving)}.log").read_text(errors="replace")
        assert '"task_handed_back"' in said
        assert '"level": "error"' not in said  # an interrupted run is the expected end of a stop

        async def taken_over() -> bool:
            async with unit_of_work(api.infra.session_factory) as db:
                now_owner = await db.scalar(select(Task.lease_owner).where(Task.id == task_id))
            return now_owner is not None and f":{staying.pid}:" in now_owner and fault_vendor.in_flight == 2

        await wait_until(taken_over, within=30)  # the left call and the resumed one, both at the vendor
        assert await api.infra.runtime.engine.slots.in_use("fault") == 2  # each with its slot
        fault_vendor.release("fault:g1")

        async def finished() -> bool:
            async with unit_of_work(api.infra.session_factory) as db:
                status = await db.scalar(select(Task.status).where(Task.id == task_id))
            return status == "succeeded"

        await wait_until(finished, within=30)
        assert fault_vendor.calls["fault:g1"] == 2  # interrupted once, run again once
        assert fault_vendor.max_in_flight == 2
        assert await _confirms(api, user.user["id"]) == 1
        assert await balance(api, user.user["id"]) == (9, 0, 9)
    finally:
        stop_workers(workers)


class _WatchedSlots(MemorySlots):
    """Slots that record every attempt to take one: (holder, won)."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[tuple[str, bool]] = []

    async def ask(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> tuple[str | None, int]:
        granted, place = await super().ask(provider, holder, accounts, lease_seconds)
        self.attempts.append((holder, granted is not None))
        return granted, place


async def test_a_resumed_sync_step_waits_for_the_slot_of_the_call_its_lost_run_left_in_flight(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync call cannot be re-attached: when a run loses its lease mid-call, the run that resumes
    the step must not call the vendor while the lost run's call may still be there — with a limit
    of one, the vendor never sees two calls at once."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(
        api, admin, "single", [step("render", provider="fault", timeout_seconds=20)], {"r": "$steps.render.result"}
    )
    fault_vendor.scenario("fault:s1", hold=True)
    user = await sms_login(api.client)
    task_id = await _queue(api, user, "single", "s1")

    slots = _WatchedSlots()
    one_at_a_time = {"fault": 1}
    # The first run's lease runs out while its call is held at the vendor (no heartbeat in time).
    losing = EngineConfig(lease_seconds=0.5, heartbeat_seconds=60, provider_concurrency=one_at_a_time)
    first = PipelineEngine(
        api.infra.session_factory, api.infra.providers, config=losing, worker_id="worker-a", slots=slots
    )
    lost_run = asyncio.create_task(first.run(task_id))

    async def at_vendor() -> bool:
        return bool(fault_vendor.in_flight_keys["fault:s1"] == 1)

    await wait_until(at_vendor)

    async def lease_over() -> bool:
        async with unit_of_work(api.infra.session_factory) as db:
            expires = await db.scalar(select(Task.lease_expires_at).where(Task.id == task_id))
        return expires is not None and expires <= utcnow()

    await wait_until(lease_over)
    steady = EngineConfig(lease_seconds=60, heartbeat_seconds=60, provider_concurrency=one_at_a_time)
    second = PipelineEngine(
        api.infra.session_factory, api.infra.providers, config=steady, worker_id="worker-b", slots=slots
    )
    resumed = asyncio.create_task(second.run(task_id))

    async def second_asked_for_a_slot() -> bool:
        return len(slots.attempts) >= 2

    await wait_until(second_asked_for_a_slot)
    [(first_holder, first_won), (second_holder, second_won)] = slots.attempts[:2]
    assert first_won
    assert second_holder != first_holder
    assert not second_won  # the lost run's call is still in flight: no slot, no call
    assert fault_vendor.max_in_flight == 1

    fault_vendor.release("fault:s1")  # the lost run's call ends; that run finds its lease gone
    assert await lost_run is None
    assert await resumed == "succeeded"
    assert fault_vendor.max_in_flight == 1  # never two calls at once
    assert fault_vendor.calls["fault:s1"] == 2  # a sync step is called again: nothing to re-attach to
    assert await _confirms(api, user.user["id"]) == 1
    assert await balance(api, user.user["id"]) == (9, 0, 9)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _captured_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record that reaches the root logger (structlog's and the libraries', taskiq's too).
    Entered once the app is up: starting it configures logging and replaces the root's handlers."""
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)


def _event(record: logging.LogRecord) -> str:
    # structlog hands the standard library its event dict; other libraries a format string.
    return str(record.msg.get("event")) if isinstance(record.msg, dict) else record.getMessage()


async def test_stopping_a_worker_hands_its_runs_back_without_logging_an_error(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs interrupted by a stop (one at the vendor, the others waiting for the provider's one
    slot) hand their tasks back: the expected end of a run at shutdown, so no error is logged."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(
        extra_providers=["tests.providers.fault:build"],
        worker_in_process=True,
        provider_concurrency={"fault": 1},
        user_max_running_tasks=0,
    )
    slots = _WatchedSlots()
    api.infra.runtime.engine.slots = slots
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "queued", [step("only", timeout_seconds=60)], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 4)
    keys = [f"q{i}" for i in range(4)]
    for key in keys:
        fault_vendor.scenario(f"fault:{key}", hold=True)
    try:
        for key in keys:
            await _queue(api, user, "queued", key)

        async def one_calls_three_wait() -> bool:
            refused = {holder for holder, won in slots.attempts if not won}
            return fault_vendor.in_flight == 1 and len(refused) == 3

        await wait_until(one_calls_three_wait)
        with _captured_logs() as log_records:
            await api.infra.runtime.stop(grace=0)
    finally:
        for key in keys:
            fault_vendor.release(f"fault:{key}")

    errors = [f"{r.name}: {_event(r)}" for r in log_records if r.levelno >= logging.ERROR]
    assert errors == []
    assert [_event(r) for r in log_records].count("task_handed_back") == 4
