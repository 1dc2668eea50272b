"""An upgrade without downtime (docs/operations.md, "Upgrading without downtime"), done once under
load: nginx in front of `wardrobe serve --workers 2` and a `wardrobe worker` on MariaDB + Redis,
clients reading and creating tasks through nginx at a steady pace, while `wardrobe migrate` runs,
the API processes are replaced one by one (SIGHUP to `serve`) and the worker is stopped (SIGTERM,
which drains) and started again. Not one request may fail (no 5xx, no connection error), every task
created ends succeeded, and no quota stays held.

The migration step runs at head, so it applies nothing: what makes a migration safe to apply
under the running version is the expand-only rule, checked on the sources by
tests/test_migration_compat.py.

Needs the Debian package nginx (installed by .ci/run); without it the test fails, never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.nginx import (
    NginxUnavailable,
    api_processes,
    free_ports,
    nginx_binary,
    render_site,
    run_nginx,
)
from tests.fixtures.tasks import (
    OWN_PROCESSES,
    ROOT,
    TERMINAL,
    balance,
    give_quota,
    make_feature,
    spawn_worker,
    step,
    stop_workers,
    wait_until,
    worker_env,
)

pytestmark = OWN_PROCESSES

WORKERS = 2
CLIENTS = 4
PACE = 0.02  # seconds between one client's requests: the load's pace, not a wait on anything


@dataclass
class Stack:
    url: str
    ports: list[int]
    env: dict[str, str]
    home: Path
    serve: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]

    def nginx_errors(self) -> str:
        return (self.home / "nginx" / "error.log").read_text(errors="replace")


@dataclass
class Load:
    """What the clients saw: every answer counted, every failure kept."""

    ok: int = 0
    created: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def _healthy(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"{url}/health")).status_code == 200
    except httpx.HTTPError:
        return False


@asynccontextmanager
async def _stack(api: Api, tmp_path: Path) -> AsyncIterator[Stack]:
    limits = {f"rate_limit_{name}": "100000/minute" for name in ("per_ip", "per_user", "task_create", "write")}
    env = worker_env(
        api,
        tmp_path,
        worker_in_process="false",
        jwt_secret=api.settings.jwt_secret.get_secret_value(),
        trusted_proxies='["127.0.0.1"]',
        user_max_running_tasks="0",
        extra_providers="[]",  # the feature runs on the built-in instant provider
        # A message the stopping worker had read from the stream but not started stays pending
        # under its name; the reaper re-queues such a task after this long (300 s by default).
        task_requeue_after_seconds="20",
        var_dir=str(tmp_path / "var"),
        **limits,
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    first = free_ports(WORKERS + 2)
    api_port, listen, base = first, first + 1, first + 2
    site = tmp_path / "wardrobe.conf"
    where = ["--port", str(api_port), "--workers", str(WORKERS), "--socketio-port-base", str(base)]
    render_site(env, site, *where, "--listen", f"127.0.0.1:{listen}", "--access-log", str(tmp_path / "access.log"))
    serve = spawn_worker(env, tmp_path / "serve.log", "serve", "--host", "127.0.0.1", *where)
    stack = Stack(
        f"http://127.0.0.1:{listen}",
        [base + i for i in range(WORKERS)],
        env,
        tmp_path,
        serve,
        spawn_worker(env, tmp_path / "worker-1.log"),
    )
    try:
        with run_nginx(tmp_path / "nginx", site) as server:

            async def up() -> bool:
                server.alive()
                assert serve.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
                urls = [stack.url, *(f"http://127.0.0.1:{p}" for p in stack.ports)]
                return all(await asyncio.gather(*(_healthy(u) for u in urls)))

            await wait_until(up, within=120, every=0.2)
            yield stack
    finally:
        stop_workers([stack.serve, stack.worker])


async def _client(http: httpx.AsyncClient, user: Session, load: Load, index: int) -> None:
    """Health, the task list, and every third round a new task, until told to stop."""
    rounds = 0
    while not load.stop.is_set():
        rounds += 1
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", "/health", None),
            ("GET", "/api/v1/tasks", None),
        ]
        if rounds % 3 == index % 3:
            calls.append(("POST", "/api/v1/tasks", {"feature": "steady", "inputs": {"key": f"k{index}-{rounds}"}}))
        for method, path, body in calls:
            headers = dict(user.headers)
            if body is not None:
                headers["Idempotency-Key"] = uuid.uuid4().hex
            try:
                resp = await http.request(method, path, json=body, headers=headers)
            except httpx.HTTPError as exc:
                load.failures.append(f"{method} {path}: {exc!r}")
                continue
            if resp.status_code != (202 if method == "POST" else 200):
                load.failures.append(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
                continue
            load.ok += 1
            if method == "POST":
                load.created.append(str(resp.json()["data"]["id"]))
            # The load's pace, ended at once when the client is told to stop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load.stop.wait(), PACE)


async def _served_more(load: Load, count: int) -> None:
    target = load.ok + count

    async def reached() -> bool:
        return load.ok >= target

    await wait_until(reached, within=120)


async def _migrate(stack: Stack) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "wardrobe.cli", "migrate"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]


async def _rolling_restart(stack: Stack) -> None:
    """SIGHUP: the supervisor starts a new process per slot, waits until it serves, then stops
    the old one gracefully."""
    old = api_processes(stack.serve.pid)
    assert len(old) == WORKERS
    stack.serve.send_signal(signal.SIGHUP)

    async def replaced() -> bool:
        assert stack.serve.poll() is None, (stack.home / "serve.log").read_text(errors="replace")[-3000:]
        current = api_processes(stack.serve.pid)
        if len(current) != WORKERS or current & old:
            return False
        return all(await asyncio.gather(*(_healthy(f"http://127.0.0.1:{p}") for p in stack.ports)))

    await wait_until(replaced, within=180, every=0.2)


async def _restart_worker(stack: Stack) -> None:
    stack.worker.send_signal(signal.SIGTERM)  # drains: runs in flight finish or are handed back
    assert await asyncio.to_thread(stack.worker.wait, 60) == 0
    stack.worker = spawn_worker(stack.env, stack.home / "worker-2.log")


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_migrate_and_rolling_restart_under_load_lose_no_request(api_factory: Any, tmp_path: Path) -> None:
    try:
        nginx_binary()
    except NginxUnavailable as exc:
        pytest.fail(str(exc))
    api: Api = await api_factory(worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(
        api, admin, "steady", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 100_000)
    async with _stack(api, tmp_path) as stack, httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        load = Load()
        clients = [asyncio.create_task(_client(http, user, load, i)) for i in range(CLIENTS)]
        try:
            await _served_more(load, 40)
            await _migrate(stack)
            await _served_more(load, 40)
            await _rolling_restart(stack)
            await _served_more(load, 40)
            await _restart_worker(stack)
            await _served_more(load, 40)
        finally:
            load.stop.set()
            await asyncio.gather(*clients, return_exceptions=True)
        assert load.failures == [], f"{len(load.failures)} of {load.ok + len(load.failures)}: {load.failures[:10]}"
        # Nor did nginx have to resend a request behind the clients' backs: no process closed a
        # connection under a request (it would have resent a GET, and answered a POST 502).
        resent = [line for line in stack.nginx_errors().splitlines() if "upstream prematurely closed" in line]
        assert resent == []
        assert len(load.created) >= 10
        states: dict[str, str] = {}

        async def all_finished() -> bool:
            for task_id in load.created:
                if states.get(task_id) in TERMINAL:
                    continue
                with suppress(httpx.HTTPError):
                    resp = await http.get(f"/api/v1/tasks/{task_id}", headers=user.headers)
                    states[task_id] = data(resp)["status"]
            return all(states.get(t) in TERMINAL for t in load.created)

        await wait_until(all_finished, within=180, every=0.5)
        assert set(states.values()) == {"succeeded"}
    _, held, _ = await balance(api, user.user["id"])
    assert held == 0
