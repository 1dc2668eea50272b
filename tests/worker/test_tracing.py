"""One trace id from the HTTP request through the task: every log line of its runs (in this process
or in worker processes, a resumed run included), its vendor calls and its push events carry the id
of the request that created it; scheduler jobs get an id of their own per run."""

from __future__ import annotations

import json
import logging
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.realtime import Listener, live
from tests.fixtures.tasks import (
    OWN_PROCESSES,
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
from wardrobe.core.logging import get_logger
from wardrobe.models import Task
from wardrobe.worker.scheduler import run_safely


class _JsonLines(logging.Handler):
    """Every log line of this process as the root handler writes it (JSON), parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []
        self.setFormatter(logging.getLogger().handlers[0].formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@contextmanager
def _captured() -> Iterator[_JsonLines]:
    handler = _JsonLines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _about(lines: list[dict[str, Any]], public_id: str, task_id: int) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("task") == public_id or line.get("task_id") == task_id]


def _file_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_text(errors="replace").splitlines() if raw.startswith("{")]


async def _create(api: Api, user: Session, feature: str, key: str, request_id: str) -> str:
    resp = await api.client.post(
        "/api/v1/tasks",
        json={"feature": feature, "inputs": {"key": key}},
        headers={**user.headers, "X-Request-Id": request_id},
    )
    assert resp.headers["x-request-id"] == request_id  # a well-formed id of the caller is kept
    return str(data(resp, 202)["id"])


async def test_a_task_logs_calls_and_pushes_under_the_id_of_the_request_that_created_it(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=True)
    admin = await login_as(api, "admin")
    # The first step's first candidate refuses (provider_failed), its fallback works.
    steps = [step("first", provider=["fault", "fault2"]), step("second", provider="fault2")]
    await make_feature(api, admin, "traced", steps, {"r": "$steps.second.result"})
    fault_vendor.scenario("fault:t1", fail_code="bad_input")
    fault_vendor.scenario("fault2:t1", hold=True)
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    request_id = f"support-{uuid.uuid4().hex[:12]}"
    listener = Listener()
    with _captured() as logs:
        async with live(api.app) as url:
            await listener.connect(url, user.access)
            try:
                public_id = await _create(api, user, "traced", "t1", request_id)
                assert (await listener.subscribe(public_id))["ok"] is True

                async def at_vendor() -> bool:
                    return "fault2:t1" in fault_vendor.in_flight_keys

                await wait_until(at_vendor)
                fault_vendor.release("fault2:t1")
                states = await listener.wait_terminal(public_id)
            finally:
                await listener.close()
    assert states[-1] == "succeeded"
    task_id = await internal_id(api, public_id)
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(Task.trace_id).where(Task.id == task_id)) == request_id

    # Support finds it from the task: the console's detail names the id to search the logs for.
    detail = data(await api.client.get(f"/api/v1/admin/tasks/{public_id}", headers=admin.headers))
    assert detail["trace_id"] == request_id
    pushes = [e for e in listener.tasks if e["payload"]["id"] == public_id]
    assert pushes
    assert {e["traceId"] for e in pushes} == {request_id}
    about = _about(logs.lines, public_id, task_id)
    assert {line["request_id"] for line in about} == {request_id}, about
    events = [line["event"] for line in about]
    for expected in ("provider_failed", "vendor_call", "vendor_http", "task_finished"):
        assert expected in events, events
    # The engine's lines of the run name the task even where the call itself does not.
    run_lines = [line for line in logs.lines if line.get("logger") == "wardrobe.engine"]
    assert run_lines
    assert all(line.get("task") == public_id for line in run_lines), run_lines
    [failed] = [line for line in about if line["event"] == "provider_failed"]
    assert (failed["provider"], failed["error_code"]) == ("fault", "bad_input")
    outcomes = {(line["provider"], line["outcome"]) for line in about if line["event"] == "vendor_call"}
    assert outcomes == {("fault", "bad_input"), ("fault2", "ok")}
    # The vendors were told the id (X-Request-Id) on every call.
    assert fault_vendor.request_ids["fault:t1"] == [request_id]
    assert set(fault_vendor.request_ids["fault2:t1"]) == {request_id}


async def test_each_run_of_a_scheduler_job_has_an_id_of_its_own(api: Api) -> None:
    log = get_logger("tests.job")

    async def tidy_up(_: Any) -> int:
        log.info("tidying")
        return 0

    with _captured() as logs:
        await run_safely(tidy_up, api.infra)
        await run_safely(tidy_up, api.infra)
    ids = [line["request_id"] for line in logs.lines if line["event"] == "tidying"]
    assert len(ids) == 2
    assert all(i.startswith("job-tidy_up-") for i in ids)
    assert ids[0] != ids[1]


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_worker_processes_and_the_one_resuming_the_task_log_and_push_under_the_same_id(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A `wardrobe worker` runs the task until it is killed mid-job; another resumes it. Every line
    either writes about the task, and every push the client gets, carries the creating request's id."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    job = step("render", action="job", kind="async_api", poll_interval_seconds=0.05, timeout_seconds=120)
    await make_feature(
        api, admin, "resumed", [step("prep", inputs={"key": "prep"}), job], {"r": "$steps.render.result"}
    )
    fault_vendor.scenario("fault:x1", hold=True)
    env = worker_env(
        api, tmp_path, task_lease_seconds="2", task_heartbeat_seconds="0.3", task_reap_interval_seconds="0.5"
    )
    env["WARDROBE_JWT_SECRET"] = api.settings.jwt_secret.get_secret_value()
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [spawn_worker(env, log) for log in logs]
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    request_id = f"support-{uuid.uuid4().hex[:12]}"
    listener = Listener()
    try:
        async with live(api.app) as url:
            await listener.connect(url, user.access)
            try:
                public_id = await _create(api, user, "resumed", "x1", request_id)
                await listener.subscribe(public_id)
                task_id = await internal_id(api, public_id)

                async def submitted() -> bool:
                    return bool(fault_vendor.submissions["fault:x1"] == 1)

                await wait_until(submitted, within=60)
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
                fault_vendor.release("fault:x1")
                states = await listener.wait_terminal(public_id, within=60)
            finally:
                await listener.close()
    finally:
        stop_workers(workers)
    assert states[-1] == "succeeded"
    first = _about(_file_lines(logs[workers.index(victim)]), public_id, task_id)
    survivor_lines = _file_lines(logs[workers.index(survivor)])
    second = _about(survivor_lines, public_id, task_id)
    # The survivor's reaper re-sent the task, in a pass with an id of its own.
    requeued = [line["request_id"] for line in survivor_lines if line["event"] == "tasks_requeued"]
    assert requeued
    assert all(rid.startswith("job-reaper-") for rid in requeued)
    assert first
    assert second
    assert {line["request_id"] for line in first + second} == {request_id}
    assert "task_finished" in [line["event"] for line in second]
    pushes = [e for e in listener.tasks if e["payload"]["id"] == public_id]
    assert {e["traceId"] for e in pushes} == {request_id}
    assert set(fault_vendor.request_ids["fault:x1"]) == {request_id}
