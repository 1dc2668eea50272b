"""The production shape (README, "Running the production stack"): nginx, with the site that
`wardrobe nginx-config` renders from the shipped template, in front of `wardrobe serve --workers 2`,
a `wardrobe worker` and the `wardrobe scheduler`, on MariaDB + Redis.

A user logs in through nginx, uploads a photo with the presigned PUT, runs a feature on it on the
local CPU provider and watches it over polling and websocket until it succeeds, then downloads the
result through nginx. Each role's `/metrics` (the API's shared port, the worker's and the
scheduler's own) refuses a scrape without the token and shows, with it, what that role did.

An Engine.IO session lives in the memory of the process that answered its handshake; over
long-polling every later request of the session is a new HTTP request, which a shared port hands to
any process. Here each of 100 Socket.IO connections per transport — polling, websocket, polling
upgraded to websocket — connects and has a call answered on its session; both processes make
sessions, and nginx's log shows every request of a session reaching the port of the process its id
names. A task created through nginx is run by the worker and its `task.updated` events reach a socket
on each transport. Through nginx the API sees each client's own address and refuses bodies above its
caps with its envelope. Killed, the API processes come back on the same ports under the same names;
SIGTERM stops the server cleanly.

Needs the Debian package nginx (installed by .ci/run); without it the test fails, never skips.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.nginx import (
    Logged,
    Nginx,
    NginxUnavailable,
    access_log,
    api_processes,
    free_ports,
    nginx_binary,
    render_site,
    run_nginx,
)
from tests.fixtures.realtime import Listener, close_client
from tests.fixtures.tasks import (
    OWN_PROCESSES,
    ROOT,
    free_port,
    make_feature,
    spawn_worker,
    step,
    stop_workers,
    wait_until,
    worker_env,
)
from tests.modules.storage import samples
from wardrobe.realtime.nodes import node_of
from wardrobe.serving import nginx
from wardrobe.settings import Settings

pytestmark = OWN_PROCESSES

WORKERS = 2
HANDSHAKES = 100  # per transport
CONCURRENCY = 10
TRANSPORTS = {"polling": ["polling"], "websocket": ["websocket"], "upgraded": ["polling", "websocket"]}
AUTH_LIMIT = 5  # /api/v1/auth/* requests per client address and minute
MAX_BODY = 64 * 1024
MAX_UPLOAD = 256 * 1024
METRICS_TOKEN = "topology-metrics-token-" + "0" * 16
# One local step on the uploaded photo: the worker reads the upload and writes its result.
THUMBNAIL = {
    "id": "thumb",
    "type": "sync_api",
    "action": "thumbnail",
    "provider_candidates": ["local"],
    "inputs": {"image": "$inputs.image", "max_side": 32},
    "timeout_seconds": 60,
}
PHOTO_FORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image", "gate"],
    "properties": {
        "image": {"type": "string", "format": "image-key", "maxLength": 256},
        "gate": {"type": "string", "maxLength": 64},  # held at the fault vendor until the sockets listen
    },
}


@dataclass
class Stack:
    url: str  # nginx
    ports: list[int]  # the API processes' own ports, by process index
    serve: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    scheduler: subprocess.Popen[bytes]
    nginx: Nginx
    home: Path
    metrics: dict[str, str]  # role -> its /metrics URL

    @property
    def origin(self) -> dict[str, str]:
        """A browser page served by this site sends this."""
        return {"Origin": self.url}

    def alive(self) -> None:
        self.nginx.alive()
        for name, process in (("serve", self.serve), ("worker", self.worker), ("scheduler", self.scheduler)):
            log = self.home / f"{name}.log"
            assert process.poll() is None, f"{name} exited:\n{log.read_text(errors='replace')[-3000:]}"


def _ports() -> tuple[int, int, int]:
    """The shared API port, nginx's, and the first private one: all below the ephemeral range."""
    first = free_ports(WORKERS + 2)
    return first, first + 1, first + 2


async def _healthy(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"{url}/health")).status_code == 200
    except httpx.HTTPError:
        return False


@asynccontextmanager
async def _stack(api: Api, tmp_path: Path) -> AsyncIterator[Stack]:
    env = worker_env(
        api,
        tmp_path,
        worker_in_process="false",
        jwt_secret=api.settings.jwt_secret.get_secret_value(),
        trusted_proxies='["127.0.0.1"]',
        rate_limit_auth=f"{AUTH_LIMIT}/minute",
        # One user opens hundreds of sockets from one address here, on purpose.
        socket_connect_limit_per_ip="100000/minute",
        socket_connect_limit_per_user="100000/minute",
        sockets_per_user="1000",
        max_body_bytes=str(MAX_BODY),
        max_upload_bytes=str(MAX_UPLOAD),
        var_dir=str(tmp_path / "var"),
        metrics_token=METRICS_TOKEN,
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    api_port, listen, base = _ports()
    site = tmp_path / "wardrobe.conf"
    where = ["--port", str(api_port), "--workers", str(WORKERS), "--socketio-port-base", str(base)]
    render_site(env, site, *where, "--listen", f"127.0.0.1:{listen}", "--access-log", str(tmp_path / "access.log"))
    serve = spawn_worker(env, tmp_path / "serve.log", "serve", "--host", "127.0.0.1", *where)
    role_ports = {"worker": free_port(), "scheduler": free_port()}
    worker = spawn_worker({**env, "WARDROBE_METRICS_PORT": str(role_ports["worker"])}, tmp_path / "worker.log")
    scheduler = spawn_worker(
        {**env, "WARDROBE_METRICS_PORT": str(role_ports["scheduler"])}, tmp_path / "scheduler.log", "scheduler"
    )
    metrics = {"api": f"http://127.0.0.1:{api_port}/metrics"}
    metrics |= {role: f"http://127.0.0.1:{port}/metrics" for role, port in role_ports.items()}
    try:
        with run_nginx(tmp_path / "nginx", site) as server:
            ports = [base + i for i in range(WORKERS)]
            stack = Stack(f"http://127.0.0.1:{listen}", ports, serve, worker, scheduler, server, tmp_path, metrics)

            async def up() -> bool:
                stack.alive()
                urls = [stack.url, *(f"http://127.0.0.1:{p}" for p in stack.ports)]
                urls += [url.removesuffix("/metrics") for role, url in metrics.items() if role != "api"]
                return all(await asyncio.gather(*(_healthy(u) for u in urls)))

            await wait_until(up, within=120, every=0.2)
            yield stack
    finally:
        stop_workers([serve, worker, scheduler])


@dataclass
class Outcome:
    nodes: list[str] = field(default_factory=list)
    transports: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def _handshakes(stack: Stack, token: str, transports: list[str], count: int) -> Outcome:
    """``count`` Socket.IO connections through nginx, each answered on its session, then closed."""
    outcome = Outcome()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with gate:
            client = socketio.AsyncClient(reconnection=False)
            try:
                await client.connect(
                    stack.url,
                    auth={"token": token},
                    headers=stack.origin,
                    socketio_path="socket.io",
                    transports=transports,
                    wait_timeout=10,
                )
                ack = await client.call("subscribe", {"task_ids": ["no-such-task"]}, timeout=10)
                assert ack == {"ok": True, "tasks": [], "refused": ["no-such-task"]}, ack
                outcome.nodes.append(node_of(client.eio.sid or "") or "?")
                outcome.transports.append(client.transport())
            except Exception as exc:
                outcome.failures.append(repr(exc))
            finally:
                await close_client(client)

    await asyncio.gather(*(one() for _ in range(count)))
    return outcome


def _all_served(outcome: Outcome, count: int, transport: str) -> None:
    assert outcome.failures == [], f"{len(outcome.failures)} of {count} failed over {transport}: {outcome.failures[:5]}"
    assert len(outcome.nodes) == count
    assert set(outcome.transports) == {"polling" if transport == "polling" else "websocket"}
    served = Counter(outcome.nodes)
    # Both processes made sessions: a test whose sessions all lived in one would prove nothing.
    assert set(served) == {"api0", "api1"}, served
    assert min(served.values()) >= count // 4, served


def _routed_by_session(stack: Stack) -> None:
    """nginx's log: each request of a session reached the port of the process its id names, and
    handshakes reached every process."""
    logged = [r for r in access_log(stack.home / "access.log") if r.uri.startswith("/socket.io/")]
    ports = {f"api{i}": f"127.0.0.1:{p}" for i, p in enumerate(stack.ports)}
    in_session = [r for r in logged if r.node != "-"]
    # At least two completed requests carry the id of each polling or upgraded session (its
    # connect and the answer to it); a websocket-only session opens without one, and a poll still
    # in flight is not in the log yet.
    assert len(in_session) >= 2 * HANDSHAKES * sum(1 for t in TRANSPORTS.values() if "polling" in t)
    assert [r for r in in_session if r.upstream != ports.get(r.node)] == []
    assert {r.upstream for r in logged if r.node == "-"} == set(ports.values())


async def _events_reach_every_transport(stack: Stack, http: httpx.AsyncClient, fault_vendor: Any) -> None:
    user = await sms_login(http)
    listeners = {name: Listener() for name in TRANSPORTS}
    try:
        for name, listener in listeners.items():
            await listener.connect(stack.url, user.access, transports=TRANSPORTS[name], headers=stack.origin)
        fault_vendor.scenario("fault:edge", hold=True)
        created = await http.post(
            "/api/v1/tasks", json={"feature": "edge", "inputs": {"key": "edge"}}, headers=user.headers
        )
        task_id = str(data(created, 202)["id"])
        for listener in listeners.values():
            assert [t["id"] for t in (await listener.subscribe(task_id))["tasks"]] == [task_id]

        async def at_vendor() -> bool:
            stack.alive()
            return "fault:edge" in fault_vendor.in_flight_keys

        await wait_until(at_vendor, within=60)
        fault_vendor.release("fault:edge")
        for name, listener in listeners.items():
            states = await listener.wait_terminal(task_id, within=60)
            assert states[-1] == "succeeded", (name, states)
            assert node_of(listener.client.eio.sid or "") in {"api0", "api1"}
    finally:
        for listener in listeners.values():
            await listener.close()


async def _upload_run_and_download(stack: Stack, http: httpx.AsyncClient, user: Session, fault_vendor: Any) -> None:
    """The first walk of a user, all through nginx: upload a photo, run a feature on it, watch it
    over polling and websocket, download the result."""
    photo = samples.noise(96, 64, "PNG")
    ask = {"filename": "look.png", "content_type": "image/png", "size": len(photo)}
    grant = data(await http.post("/api/v1/uploads", json=ask, headers=user.headers))
    upload = grant["upload"]
    stored = data(await http.request(upload["method"], upload["url"], content=photo, headers=upload["headers"]), 201)
    assert (stored["width"], stored["height"]) == (96, 64)
    listeners = {name: Listener() for name in ("polling", "websocket")}
    try:
        for name, listener in listeners.items():
            await listener.connect(stack.url, user.access, transports=TRANSPORTS[name], headers=stack.origin)
        fault_vendor.scenario("fault:look", hold=True)
        body = {"feature": "look", "inputs": {"image": grant["object_key"], "gate": "look"}}
        task_id = str(data(await http.post("/api/v1/tasks", json=body, headers=user.headers), 202)["id"])
        for listener in listeners.values():
            assert [t["id"] for t in (await listener.subscribe(task_id))["tasks"]] == [task_id]

        async def at_vendor() -> bool:
            stack.alive()
            return "fault:look" in fault_vendor.in_flight_keys

        await wait_until(at_vendor, within=60)
        fault_vendor.release("fault:look")
        for name, listener in listeners.items():
            states = await listener.wait_terminal(task_id, within=60)
            assert states[-1] == "succeeded", (name, states)
    finally:
        for listener in listeners.values():
            await listener.close()
    task = data(await http.get(f"/api/v1/tasks/{task_id}", headers=user.headers))
    [output] = [o for o in task["outputs"] if o["name"] == "thumb"]
    result = await http.get(output["url"])
    assert result.status_code == 200, result.text
    with Image.open(io.BytesIO(result.content)) as thumb:
        assert max(thumb.size) == 32  # the worker read the upload and wrote what it made of it


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a scrape, summed over the label values not given."""
    total, found = 0.0, False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total, found = total + sample.value, True
    assert found, f"{name}{labels} is not in the scrape"
    return total


async def _every_role_is_scraped(stack: Stack) -> None:
    """Each role serves its own metrics behind the token, and shows what it did: the API took the
    task, the worker ran it, the scheduler probed the database and ticked."""
    scrapes: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for role, url in stack.metrics.items():
            assert (await client.get(url)).status_code == 401, role
            answer = await client.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert answer.status_code == 200, (role, answer.text)
            scrapes[role] = answer.text
    assert _sample(scrapes["api"], "wardrobe_tasks_created_total", feature="look") == 1
    assert _sample(scrapes["api"], "wardrobe_http_requests_total", route="/api/v1/uploads", status="200") >= 1
    assert _sample(scrapes["worker"], "wardrobe_tasks_finished_total", feature="look", status="succeeded") == 1
    assert _sample(scrapes["worker"], "wardrobe_step_duration_seconds_count", provider="local") >= 1

    async def probed() -> bool:  # the scheduler's probe runs on its own clock
        async with httpx.AsyncClient(timeout=10) as client:
            auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            text = (await client.get(stack.metrics["scheduler"], headers=auth)).text
        return "wardrobe_dependency_up{" in text and _sample(text, "wardrobe_dependency_up", dependency="database") == 1

    await wait_until(probed, within=60, every=0.5)


async def _client_addresses_reach_the_api(stack: Stack) -> None:
    """Per-address limits count each client apart: nginx hands the client's address on and the API
    believes it from its trusted proxy. Were it lost, every client would share nginx's address, and
    the window that the login of this test already used from 127.0.0.1 would refuse sooner."""

    async def auth_calls(address: str, count: int) -> list[int]:
        transport = httpx.AsyncHTTPTransport(local_address=address)
        async with httpx.AsyncClient(transport=transport, base_url=stack.url, timeout=30) as client:
            bad = {"phone": "not-a-phone"}  # refused by validation, still counted by the window
            return [(await client.post("/api/v1/auth/sms-codes", json=bad)).status_code for _ in range(count)]

    assert await auth_calls("127.0.0.2", AUTH_LIMIT + 1) == [422] * AUTH_LIMIT + [429]
    assert await auth_calls("127.0.0.3", 1) == [422]


async def _body_caps(stack: Stack, http: httpx.AsyncClient) -> None:
    too_large = await http.post("/api/v1/tasks", content=b"x" * (MAX_BODY + 1), headers={"Accept-Language": "en"})
    assert too_large.status_code == 413
    body = too_large.json()
    assert (body["success"], body["code"], body["message"]) == (
        False,
        "PAYLOAD_TOO_LARGE",
        "The request body is too large",
    )
    assert body["request_id"] == too_large.headers["x-request-id"]
    upload = "/api/v1/storage/objects/uploads/1/x.png"  # larger bodies pass here, up to the upload cap
    assert (await http.put(upload, content=b"x" * (MAX_BODY + 1))).status_code != 413
    assert (await http.put(upload, content=b"x" * (MAX_UPLOAD + 1))).json()["code"] == "PAYLOAD_TOO_LARGE"

    def refused() -> list[Logged]:
        return [r for r in access_log(stack.home / "access.log") if r.status == 413]

    async def both_logged() -> bool:  # nginx logs a request once it has drained its body
        return len(refused()) == 2

    await wait_until(both_logged, within=30)
    assert {r.upstream for r in refused()} == {"-"}  # nginx answered; no process read those bodies


def _still_running(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


async def _processes_come_back(stack: Stack, token: str) -> None:
    """The supervisor restarts a killed process on its own port and under its name."""
    killed = api_processes(stack.serve.pid)
    assert len(killed) == WORKERS
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    async def back() -> bool:
        stack.alive()
        current = api_processes(stack.serve.pid)
        if len(current) != WORKERS or current & killed:
            return False
        return all(await asyncio.gather(*(_healthy(f"http://127.0.0.1:{p}") for p in stack.ports)))

    await wait_until(back, within=120, every=0.2)
    _all_served(await _handshakes(stack, token, TRANSPORTS["polling"], 20), 20, "polling")


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_socketio_behind_nginx_reaches_every_process_over_every_transport(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    try:
        nginx_binary()
    except NginxUnavailable as exc:
        pytest.fail(str(exc))
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "edge", [step("only", timeout_seconds=120)], {"r": "$steps.only.result"})
    gate = step("gate", inputs={"key": "$inputs.gate"}, timeout_seconds=120)
    await make_feature(api, admin, "look", [gate, THUMBNAIL], {"thumb": "$steps.thumb.image"}, form_schema=PHOTO_FORM)
    async with _stack(api, tmp_path) as stack, httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        watcher = await sms_login(http)
        for name, transports in TRANSPORTS.items():
            _all_served(await _handshakes(stack, watcher.access, transports, HANDSHAKES), HANDSHAKES, name)
        _routed_by_session(stack)
        await _events_reach_every_transport(stack, http, fault_vendor)
        await _upload_run_and_download(stack, http, watcher, fault_vendor)
        await _every_role_is_scraped(stack)
        await _client_addresses_reach_the_api(stack)
        await _body_caps(stack, http)
        await _processes_come_back(stack, watcher.access)
        children = api_processes(stack.serve.pid)
        stack.serve.send_signal(signal.SIGTERM)  # graceful: the supervisor stops and waits for each process
        assert stack.serve.wait(timeout=60) == 0
        assert _still_running(children) == set()


def test_the_shipped_site_is_the_rendering_for_two_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/nginx/wardrobe.conf is what `wardrobe nginx-config --workers 2` prints with the
    default settings, so the file in the repository and the command never drift apart."""
    for name in list(os.environ):
        if name.startswith("WARDROBE_"):
            monkeypatch.delenv(name)
    settings = Settings(_env_file=None)
    rendered = nginx.render(nginx.site(settings, workers=2, command_args=" --workers 2"))
    assert (ROOT / "deploy" / "nginx" / "wardrobe.conf").read_text(encoding="utf-8") == rendered
