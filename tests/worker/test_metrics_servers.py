"""`wardrobe worker` and `wardrobe scheduler` serve GET /metrics and GET /health on
WARDROBE_METRICS_PORT, with the API's token rule, and stop cleanly on SIGTERM."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.fixtures.tasks import OWN_PROCESSES, free_port, spawn_worker, stop_workers, wait_until, worker_env

pytestmark = [OWN_PROCESSES, pytest.mark.parametrize("backend", ["mariadb"], indirect=True)]
TOKEN = "metrics-token-for-the-test-0123456789"


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


def _env(api: Api, tmp_path: Path, **settings: str) -> dict[str, str]:
    env = worker_env(api, tmp_path, **settings)
    env.pop("WARDROBE_EXTRA_PROVIDERS")  # no task runs here: the fault vendor is not needed
    return env


async def _serving(http: httpx.AsyncClient, base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(_text(log))
        try:
            return (await http.get(f"{base}/health")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(up, within=60, every=0.2)


def _stopped_cleanly(process: subprocess.Popen[bytes], log: Path, event: str | None) -> None:
    stop_workers([process])
    text = log.read_text()
    assert process.returncode == 0, text
    assert "Traceback" not in text
    if event is not None:
        assert event in text


async def test_a_worker_serves_its_metrics_to_the_token_and_its_health(api_factory: Any, tmp_path: Path) -> None:
    api: Api = await api_factory(worker_in_process=False)
    port = free_port()
    env = _env(api, tmp_path, metrics_port=str(port), metrics_token=TOKEN)
    log = tmp_path / "worker.log"
    worker = spawn_worker(env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await _serving(http, base, worker, log)
            health = await http.get(f"{base}/health")
            assert health.json() == {"role": "worker", "ok": True}
            assert (await http.get(f"{base}/metrics")).status_code == 401
            wrong = await http.get(f"{base}/metrics", headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401
            assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'

            async def probed() -> bool:
                answer = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
                assert answer.status_code == 200
                # The queue is read after the database in a probe round: both there = a round done.
                return 'wardrobe_queue_depth{queue="tasks"}' in answer.text

            await wait_until(probed, within=30, every=0.2)
            body = (await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
            assert 'wardrobe_dependency_up{dependency="database"} 1.0' in body
            assert 'wardrobe_dependency_up{dependency="redis"} 1.0' in body
            assert "wardrobe_outbox_backlog" in body
            assert "wardrobe_db_pool_size" in body
    finally:
        _stopped_cleanly(worker, log, "worker_stopped")


async def test_a_scheduler_serves_its_metrics_and_health_and_stops_on_sigterm(api_factory: Any, tmp_path: Path) -> None:
    api: Api = await api_factory(worker_in_process=False)
    port = free_port()
    # No token configured outside production: open, as the API's /metrics is.
    env = _env(api, tmp_path, metrics_port=str(port))
    env.pop("WARDROBE_METRICS_TOKEN", None)
    log = tmp_path / "scheduler.log"
    scheduler = spawn_worker(env, log, "scheduler")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await _serving(http, base, scheduler, log)
            assert (await http.get(f"{base}/health")).json() == {"role": "scheduler", "ok": True}
            answer = await http.get(f"{base}/metrics")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain")
            assert "wardrobe_dependency_up" in answer.text or "wardrobe_db_pool_size" in answer.text
    finally:
        _stopped_cleanly(scheduler, log, None)


async def test_without_a_port_no_server_is_started(api_factory: Any, tmp_path: Path) -> None:
    api: Api = await api_factory(worker_in_process=False)
    env = _env(api, tmp_path)
    env.pop("WARDROBE_METRICS_PORT", None)
    log = tmp_path / "worker.log"
    worker = spawn_worker(env, log)
    try:

        async def started() -> bool:
            assert worker.poll() is None, _text(log)
            return "worker_started" in _text(log)

        await wait_until(started, within=60, every=0.2)
    finally:
        _stopped_cleanly(worker, log, "worker_stopped")
    assert "metrics_server_started" not in log.read_text()
