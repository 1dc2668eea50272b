"""OpenTelemetry: off by default; when WARDROBE_OTEL_ENDPOINT is set, an API process and a worker
process export the spans of a request and of the task it created in one trace (the caller's
traceparent honoured), and the request id in their logs is that trace id."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import (
    OWN_PROCESSES,
    free_port,
    give_quota,
    make_feature,
    spawn_worker,
    step,
    stop_workers,
    wait_until,
    worker_env,
)
from tests.peers.otlp import OtlpReceiver, create_otlp_app
from tests.peers.server import PeerServer
from wardrobe.core import telemetry
from wardrobe.core.db import unit_of_work
from wardrobe.models import Task


async def test_tracing_is_off_by_default(api: Api) -> None:
    assert api.settings.otel_endpoint == ""
    assert not telemetry.enabled()
    # No SDK provider was installed: the API's global one is still the no-op proxy.
    assert not type(trace.get_tracer_provider()).__module__.startswith("opentelemetry.sdk")
    assert telemetry.current_traceparent() is None
    assert telemetry.queue_middlewares() == []
    assert api.infra.runtime.broker.middlewares == []
    resp = await api.client.get("/health", headers={"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"})
    assert resp.headers["x-request-id"] != "a" * 32  # a traceparent means nothing while tracing is off


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_request_and_the_task_it_created_are_one_trace(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "otel", [step("only")], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    # This test's own app would relay the run message too, without tracing: only the two traced
    # processes may (whichever is first: the API once it commits, or the worker's relay).
    await api.infra.runtime.stop()
    receiver = OtlpReceiver()
    with PeerServer(create_otlp_app(receiver)) as collector:
        env = worker_env(api, tmp_path, otel_endpoint=collector.base_url, worker_in_process="false")
        env["WARDROBE_JWT_SECRET"] = api.settings.jwt_secret.get_secret_value()
        env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # the SDK's batch delay (5 s by default)
        port = free_port()
        processes = [
            spawn_worker(env, tmp_path / "worker.log"),
            spawn_worker(env, tmp_path / "api.log", "serve", "--host", "127.0.0.1", "--port", str(port)),
        ]
        trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

                async def up() -> bool:
                    try:
                        return (await client.get("/health")).status_code == 200
                    except httpx.TransportError:
                        return False

                await wait_until(up, within=60, every=0.2)
                resp = await client.post(
                    "/api/v1/tasks",
                    json={"feature": "otel", "inputs": {"key": "o1"}},
                    headers={**user.headers, "traceparent": f"00-{trace_id}-{caller_span}-01", "X-Request-Id": "mine"},
                )
                public_id = data(resp, 202)["id"]
                assert resp.headers["x-request-id"] == trace_id  # the request id is the trace id

                async def finished() -> bool:
                    body = data(await client.get(f"/api/v1/tasks/{public_id}", headers=user.headers))
                    return bool(body["status"] == "succeeded")

                await wait_until(finished, within=60)

            def names(service: str) -> set[str]:
                return {s.name for s in receiver.of_trace(trace_id) if s.service == service}

            async def exported() -> bool:
                return "wardrobe.task.run" in names("wardrobe-worker") and any(
                    "/api/v1/tasks" in name for name in names("wardrobe-api")
                )

            await wait_until(exported, within=60)
        finally:
            stop_workers(processes)
    spans = receiver.of_trace(trace_id)
    [server] = [s for s in spans if s.service == "wardrobe-api" and s.name == "POST /api/v1/tasks"]
    assert server.parent_span_id == caller_span  # the caller's traceparent was honoured
    worker_spans = {s.name: s for s in spans if s.service == "wardrobe-worker"}
    # taskiq's middleware carried the trace through the queue; the run is a span inside it.
    execute = worker_spans["execute/wardrobe.run_task"]
    assert worker_spans["wardrobe.task.run"].parent_span_id == execute.span_id
    # The message was sent to the queue inside the request's trace, by whichever relay sent it.
    assert any(s.name.startswith("send/") for s in spans if s.service in ("wardrobe-api", "wardrobe-worker"))
    # The statements of the request and of the run, in their spans (SQLAlchemy's instrumentation).
    for service in ("wardrobe-api", "wardrobe-worker"):
        assert any(s.name.startswith(("SELECT", "INSERT", "UPDATE")) for s in spans if s.service == service), service
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(Task.trace_id).where(Task.public_id == public_id)) == trace_id
    lines = [json.loads(raw) for raw in (tmp_path / "worker.log").read_text().splitlines() if raw.startswith("{")]
    about = [line for line in lines if line.get("task") == public_id]
    assert about
    assert {line["request_id"] for line in about} == {trace_id}
