"""Wardrobe's vendor-path benchmark: tasks through the RunningHub peer at its concurrency cap.

    python3 dev.py bench-vendors                                    # 200 tasks, cap 3, 0.2 s + 1.0 s
    .venv/bin/python bench/vendors.py --tasks 50 --wait-idle 0      # a quick look
    .venv/bin/python bench/vendors.py --rate 2                      # 2 creations/s instead of a burst

One bounded run on MariaDB (database `wardrobe_bench_vendors`, re-created and migrated with `wardrobe
migrate`) and Redis (database 14, keys `wardrobe-bench-vendors*`, deleted at the end):

- the RunningHub peer (tests/peers/runninghub.py) is served by this process on a loopback port, with
  one API key capped at C tasks QUEUED or RUNNING at once and real-time vendor timers (`auto`: each
  task QUEUED for `--queued-s`, then RUNNING for `--running-s`);
- one `wardrobe serve` (1 API process: uploads, task creation, the webhook endpoint) and 2 `wardrobe
  worker` processes, with `WARDROBE_PROVIDER_CONCURRENCY={"runninghub": C}`;
- an outfit-change feature (one `async_api` step on provider `runninghub`, made through the admin
  API), users with quota and two uploaded images each (through `/api/v1/uploads`);
- N tasks created through `POST /api/v1/tasks`, all at once (or at a fixed arrival rate), watched in
  the database until every one is terminal.

It reports wall time, throughput against the ideal C / (queued_s + running_s), latency from creation to
the end, the added latency (end − creation − the vendor's own time for that task, as the peer
accounted it) split into its phases, the peak in flight at the peer (≤ C), 421 refusals (0), creates
(= N), webhooks against polls, and CPU. Every wait is bounded; every process it starts is stopped by
process id (bench/run.py's Registry); all traffic is on 127.0.0.1. See bench/README.md, section
"Vendor path".
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    FIXED_SETTINGS,
    RESULTS_DIR,
    ROOT,
    Check,
    Stores,
    extra_settings,
    machine_and_software,
    migrate,
    percentile,
    run_bench,
    write_report,
)
from run import (
    CLOCK_TICKS,
    CPU_COUNT,
    LOOPBACK,
    VENV_BIN,
    BenchError,
    Registry,
    Started,
    _bounded,
    _fmt,
    free_port,
    machine_busy_ticks,
    pids_by_name,
    pids_cpu_ticks,
    say,
    tree_cpu_ticks,
    wait_for_idle,
    wait_until_up,
)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the peer lives in tests/peers/

# Its keys in Redis: the task stream, provider slots, limiter windows.
STORES = Stores(db_name="wardrobe_bench_vendors", redis_db=14, redis_prefix="wardrobe-bench-vendors")
API_KEY = "wardrobe-bench-runninghub-key-01"  # the peer's only key; obviously fake
FEATURE = "bench_outfit"
STEP = "change"
ACTION = "outfit_change"
PROVIDER = "runninghub"
WORKERS = 2
# Set by this script (the stores' settings and the vendor's); --wardrobe-env can't change them.
VENDOR_SETTINGS = (
    *FIXED_SETTINGS,
    "WARDROBE_RUNNINGHUB_BASE_URL",
    "WARDROBE_RUNNINGHUB_API_KEY",
    "WARDROBE_RUNNINGHUB_WORKFLOWS",
    "WARDROBE_PROVIDER_CONCURRENCY",
    "WARDROBE_VENDOR_CALLBACK_BASE_URL",
    "WARDROBE_VENDOR_OUTPUT_ALLOW_PRIVATE",
)

# Bounds, so that no wait or loop of this script can run on for ever.
WORKER_START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
POLL_DB_S = 0.2
WEBHOOK_SETTLE_S = 10.0  # after the last task ended, for the last webhooks to land
_T0 = time.monotonic()


def wardrobe_env(work: Path, secret: str, peer_url: str, api_port: int, args: argparse.Namespace) -> dict[str, str]:
    """The environment of every Wardrobe process of the run (API, workers, migrate)."""
    from tests.peers.runninghub_fixtures import RUNNINGHUB_WORKFLOWS_SETTING

    # A dedicated-worker deployment: the API creates and publishes, the 2 workers run tasks.
    env = STORES.wardrobe_env(
        work,
        secret,
        WARDROBE_RUNNINGHUB_BASE_URL=peer_url,
        WARDROBE_RUNNINGHUB_API_KEY=API_KEY,
        WARDROBE_RUNNINGHUB_WORKFLOWS=json.dumps({ACTION: RUNNINGHUB_WORKFLOWS_SETTING[ACTION]}),
        WARDROBE_PROVIDER_CONCURRENCY=json.dumps({PROVIDER: args.cap, "local": 2}),
        # The peer's webhooks reach the API; its result files are served on loopback.
        WARDROBE_VENDOR_CALLBACK_BASE_URL=f"http://{LOOPBACK}:{api_port}",
        WARDROBE_VENDOR_OUTPUT_ALLOW_PRIVATE=json.dumps([peer_url.removeprefix("http://")]),
    )
    env.update(args.extra_env)
    return env


# ---------------------------------------------------------------------------------------------
# The peer, in this process
# ---------------------------------------------------------------------------------------------


class Peer:
    """The RunningHub peer on a loopback port, in a thread of this process (tests/peers/server.py)."""

    def __init__(self, cap: int, queued_s: float, running_s: float) -> None:
        from tests.peers.runninghub import RunningHubPeer
        from tests.peers.runninghub_app import create_runninghub_app
        from tests.peers.runninghub_fixtures import OUTFIT_CHANGE_WORKFLOW
        from tests.peers.server import PeerServer

        # Webhooks get 10 s to be answered (the tests' 2 s is for an idle machine).
        self.state = RunningHubPeer(webhook_timeout=10.0, coins_per_task=1)
        self.state.add_key(API_KEY, cap=cap, coins=10**9)
        self.state.register_workflow(OUTFIT_CHANGE_WORKFLOW)
        self.state.auto(queued_s, running_s)
        self.server = PeerServer(create_runninghub_app(self.state))

    def __enter__(self) -> Peer:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.state.close()
        finally:
            self.server.__exit__(None, None, None)

    @property
    def base_url(self) -> str:
        return self.server.base_url


# ---------------------------------------------------------------------------------------------
# Data: users, admin, feature, uploads
# ---------------------------------------------------------------------------------------------


def png(rgb: tuple[int, int, int]) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (192, 256), rgb)
    ImageDraw.Draw(image).ellipse((48, 40, 144, 216), fill=(rgb[2], rgb[0], rgb[1]))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def grant_quota(users: Sequence[int], amount: int, admin: int) -> None:
    """A quota account and a grant through the ledger for each user; ``admin`` becomes an admin."""
    from sqlalchemy import insert, text

    from wardrobe.core.db import create_engine, unit_of_work
    from wardrobe.models import LedgerKind, QuotaAccount
    from wardrobe.models.base import utcnow
    from wardrobe.modules.billing import quota
    from wardrobe.settings import Settings

    engine = create_engine(Settings(_env_file=None, database_url=STORES.db_url, db_pool_size=2))
    try:
        from sqlalchemy.ext.asyncio import async_sessionmaker

        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with unit_of_work(sessions) as session:
            await session.execute(text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": admin})
            rows = [{"user_id": uid, "balance": 0, "held": 0, "updated_at": utcnow()} for uid in users]
            await session.execute(insert(QuotaAccount), rows)
            for uid in users:
                await quota.credit(session, uid, amount, kind=LedgerKind.GRANT, ref=f"bench-grant:{uid}")
    finally:
        await engine.dispose()


def feature_definition(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The outfit change: one async_api step on RunningHub (as in tests/modules/providers/test_runninghub.py)."""
    pipeline = {
        "key": FEATURE,
        "definition": {
            "steps": [
                {
                    "id": STEP,
                    "type": "async_api",
                    "action": ACTION,
                    "provider_candidates": [PROVIDER],
                    "inputs": {"person": "$inputs.person", "garment": "$inputs.garment"},
                    "poll_interval_seconds": args.poll_interval,
                    # Bounds the wait for a provider slot as well as the job itself.
                    "timeout_seconds": args.step_timeout,
                    "retries": 4,
                    "backoff_seconds": 0.2,
                }
            ],
            "outputs": {"image": f"$steps.{STEP}.image"},
        },
    }
    feature = {
        "key": FEATURE,
        "name": "Bench outfit change",
        "quota_cost": 1,
        "pipeline_key": FEATURE,
        "form_schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["person", "garment"],
            "properties": {
                "person": {"type": "string", "format": "image-key", "maxLength": 256},
                "garment": {"type": "string", "format": "image-key", "maxLength": 256},
            },
        },
    }
    return pipeline, feature


def _data(resp: Any, status: int, what: str) -> dict[str, Any]:
    if resp.status_code != status:
        raise BenchError(f"{what}: HTTP {resp.status_code} {resp.text[:300]}")
    body: dict[str, Any] = resp.json()["data"]
    return body


async def make_feature(base: str, admin_token: str, args: argparse.Namespace) -> None:
    import httpx

    pipeline, feature = feature_definition(args)
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S, headers=headers) as client:
        _data(await client.post("/api/v1/admin/pipelines", json=pipeline), 201, "admin: pipeline")
        _data(await client.post("/api/v1/admin/features", json=feature), 201, "admin: feature")


async def upload_images(base: str, tokens: dict[int, str], lanes: int) -> dict[int, tuple[str, str]]:
    """Each user uploads a person and a garment photo through /api/v1/uploads: object keys by user."""
    import httpx

    person, garment = png((180, 150, 120)), png((40, 90, 160))
    found: dict[int, tuple[str, str]] = {}
    gate = asyncio.Semaphore(lanes)

    async def one(client: httpx.AsyncClient, token: str, body: bytes) -> str:
        headers = {"Authorization": f"Bearer {token}"}
        meta = {"filename": "in.png", "content_type": "image/png", "size": len(body)}
        grant = _data(await client.post("/api/v1/uploads", json=meta, headers=headers), 200, "upload grant")
        up = grant["upload"]
        resp = await client.request(up["method"], up["url"], content=body, headers=up["headers"])
        if resp.status_code != 201:
            raise BenchError(f"upload: HTTP {resp.status_code} {resp.text[:300]}")
        return str(grant["object_key"])

    async def user(client: httpx.AsyncClient, uid: int, token: str) -> None:
        async with gate:
            found[uid] = (await one(client, token, person), await one(client, token, garment))

    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S) as client:
        await asyncio.gather(*(user(client, uid, tok) for uid, tok in tokens.items()))
    return found


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Creation:
    index: int
    user_id: int
    public_id: str = ""
    sent: float = 0.0  # wall clock (time.time) when the request left
    answered: float = 0.0
    status: int = 0
    error: str = ""


async def create_tasks(
    base: str, tokens: dict[int, str], images: dict[int, tuple[str, str]], args: argparse.Namespace
) -> list[Creation]:
    """N creations, owners in turn: all at once (``--lanes`` requests in flight), or one every
    1/``--rate`` seconds on a fixed schedule (an open model: a late answer delays nothing)."""
    import httpx

    users = sorted(tokens)
    plan = [Creation(i, users[i % len(users)]) for i in range(args.tasks)]
    gate = asyncio.Semaphore(args.lanes if not args.rate else args.tasks)
    run_id = secrets.token_hex(4)
    t0 = time.monotonic()

    async def one(client: httpx.AsyncClient, c: Creation) -> None:
        if args.rate:
            await asyncio.sleep(max(0.0, t0 + c.index / args.rate - time.monotonic()))
        async with gate:
            person, garment = images[c.user_id]
            body = {"feature": FEATURE, "inputs": {"person": person, "garment": garment}}
            headers = {"Authorization": f"Bearer {tokens[c.user_id]}", "Idempotency-Key": f"bench-{run_id}-{c.index}"}
            c.sent = time.time()
            resp = await client.post("/api/v1/tasks", json=body, headers=headers)
            c.answered, c.status = time.time(), resp.status_code
            if resp.status_code == 202:
                c.public_id = str(resp.json()["data"]["id"])
            else:
                c.error = resp.text[:300]

    limits = httpx.Limits(max_connections=max(args.lanes, 10), max_keepalive_connections=max(args.lanes, 10))
    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        await asyncio.gather(*(one(client, c) for c in plan))
    return plan


@dataclass(slots=True)
class TaskRow:
    public_id: str
    status: str
    error_code: str | None
    created: float  # wall-clock seconds (epoch)
    started: float | None
    finished: float | None
    step_started: float | None
    step_finished: float | None
    step_attempts: int
    vendor_task_id: str | None
    runs: int
    webhook_at: float | None = None
    webhook_deliveries: int = 0
    vendor_created: float | None = None
    vendor_started: float | None = None
    vendor_finished: float | None = None


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def db_rows(query: str, **params: Any) -> list[tuple[Any, ...]]:
    from sqlalchemy import text

    from wardrobe.core.db import create_engine
    from wardrobe.settings import Settings

    engine = create_engine(Settings(_env_file=None, database_url=STORES.db_url, db_pool_size=1))
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(text(query), params)]
    finally:
        await engine.dispose()


TASKS_SQL = """
SELECT t.public_id, t.status, t.error_code, t.created_at, t.started_at, t.finished_at,
       s.started_at, s.finished_at, COALESCE(s.attempts, 0), s.vendor_task_id, t.runs,
       c.received_at, COALESCE(c.deliveries, 0)
FROM tasks t
LEFT JOIN task_steps s ON s.task_id = t.id AND s.step_id = :step
LEFT JOIN vendor_callbacks c ON c.provider = :provider AND c.ref = CONCAT(t.public_id, '.', :step)
WHERE t.feature_key = :feature ORDER BY t.id
"""


async def watch(count: int, within: float, procs: Sequence[Started]) -> float:
    """Poll the database until ``count`` tasks of the feature are terminal; when that happened."""
    from sqlalchemy import text

    from wardrobe.core.db import create_engine
    from wardrobe.settings import Settings

    engine = create_engine(Settings(_env_file=None, database_url=STORES.db_url, db_pool_size=1))
    deadline = time.monotonic() + within
    last_say = 0.0
    try:
        while True:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text("SELECT status, COUNT(*) FROM tasks WHERE feature_key = :f GROUP BY status"),
                        {"f": FEATURE},
                    )
                ).all()
            counts = {str(s): int(n) for s, n in rows}
            done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "canceled"))
            if done >= count:
                return time.time()
            for proc in procs:
                if not proc.alive():
                    raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"tasks not all terminal within {within:.0f} s: {counts}")
            if time.monotonic() - last_say > 10:
                say(f"  {done}/{count} terminal {dict(sorted(counts.items()))}")
                last_say = time.monotonic()
            await asyncio.sleep(POLL_DB_S)
    finally:
        await engine.dispose()


def read_tasks(peer: Peer) -> list[TaskRow]:
    raw = asyncio.run(db_rows(TASKS_SQL, step=STEP, provider=PROVIDER, feature=FEATURE))
    rows = [
        TaskRow(
            public_id=str(r[0]),
            status=str(r[1]),
            error_code=r[2],
            created=_epoch(r[3]) or 0.0,
            started=_epoch(r[4]),
            finished=_epoch(r[5]),
            step_started=_epoch(r[6]),
            step_finished=_epoch(r[7]),
            step_attempts=int(r[8]),
            vendor_task_id=r[9],
            runs=int(r[10]),
            webhook_at=_epoch(r[11]),
            webhook_deliveries=int(r[12]),
        )
        for r in raw
    ]
    # The peer's clock is monotonic: move it onto the wall clock the database's stamps use.
    offset = time.time() - time.monotonic()
    for row in rows:
        vendor = peer.state.tasks.get(row.vendor_task_id or "")
        if vendor is not None:
            row.vendor_created = vendor.created_at + offset
            row.vendor_started = vendor.started_at + offset if vendor.started_at is not None else None
            row.vendor_finished = vendor.finished_at + offset if vendor.finished_at is not None else None
    return rows


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def dist(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "mean": sum(values) / len(values) if values else float("nan"),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else float("nan"),
    }


def phase(
    rows: Sequence[TaskRow], a: Callable[[TaskRow], float | None], b: Callable[[TaskRow], float | None]
) -> dict[str, float]:
    return dist([bv - av for r in rows if (av := a(r)) is not None and (bv := b(r)) is not None])


@dataclass(slots=True)
class Report:
    started: str
    command: str
    machine: str = ""
    software: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    busy_before: float = 0.0
    creation: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    throughput: float = 0.0
    ideal: float = 0.0
    steady_throughput: float = 0.0
    utilisation: float = 0.0
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    peer: dict[str, Any] = field(default_factory=dict)
    completion: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


def figures(report: Report, rows: list[TaskRow], peer: Peer, args: argparse.Namespace, end: float) -> None:
    state = peer.state
    done = [r for r in rows if r.finished is not None]
    first_created = min(r.created for r in rows)
    report.wall_s = end - first_created
    last_finished = max((r.finished for r in done if r.finished), default=end)
    report.throughput = len(done) / max(1e-9, last_finished - first_created)
    report.ideal = args.cap / (args.queued_s + args.running_s)
    # Steady state: completions 10 % .. 90 % of the run, where the queue is full and not draining.
    ends = sorted(r.finished for r in done if r.finished is not None)
    lo, hi = int(len(ends) * 0.1), int(len(ends) * 0.9)
    report.steady_throughput = (hi - lo) / max(1e-9, ends[hi - 1] - ends[lo]) if hi - lo > 1 else float("nan")
    vendor_busy = sum(
        r.vendor_finished - r.vendor_created for r in rows if r.vendor_finished is not None and r.vendor_created
    )
    report.utilisation = vendor_busy / max(1e-9, args.cap * (last_finished - first_created))

    def vendor(r: TaskRow) -> float | None:
        return r.vendor_finished - r.vendor_created if r.vendor_finished is not None and r.vendor_created else None

    def added(r: TaskRow) -> float | None:
        v = vendor(r)
        return r.finished - r.created - v if r.finished is not None and v is not None else None

    def engine_only(r: TaskRow) -> float | None:
        a = added(r)
        if a is None or r.started is None or r.step_started is None:
            return None
        return a - (r.started - r.created) - (r.step_started - r.started)

    report.latency = {
        "creation → terminal (total)": phase(rows, lambda r: r.created, lambda r: r.finished),
        "vendor time (peer: created → ended)": dist([v for r in rows if (v := vendor(r)) is not None]),
        "added = total − vendor time": dist([a for r in rows if (a := added(r)) is not None]),
        "1. created → claimed by a worker": phase(rows, lambda r: r.created, lambda r: r.started),
        "2. claimed → provider slot taken (step starts)": phase(rows, lambda r: r.started, lambda r: r.step_started),
        "3. step starts → vendor create admitted (2 uploads + create)": phase(
            rows, lambda r: r.step_started, lambda r: r.vendor_created
        ),
        "4. vendor ended → step succeeded (poll, output fetched and stored)": phase(
            rows, lambda r: r.vendor_finished, lambda r: r.step_finished
        ),
        "slot held: step starts → step succeeded": phase(rows, lambda r: r.step_started, lambda r: r.step_finished),
        "5. step succeeded → task terminal": phase(rows, lambda r: r.step_finished, lambda r: r.finished),
        "added − waits (1 + 2): the engine's own cost": dist([e for r in rows if (e := engine_only(r)) is not None]),
        "vendor ended → webhook recorded by the API": phase(rows, lambda r: r.vendor_finished, lambda r: r.webhook_at),
    }
    deliveries = list(state.deliveries)
    report.peer = {
        "creates": state.creates_by_key[API_KEY],
        "peak_in_flight": state.peak_in_flight[API_KEY],
        "refusals_421": len(state.refusals_with(421)),
        # 813/804 are /outputs answering "queued"/"running" to a poll: the peer records them as refusals.
        "polls_not_ready": sum(1 for r in state.refusals if r.code in (804, 813)),
        "refusals_other": dict(Counter(r.code for r in state.refusals if r.code not in (804, 813))),
        "steady_mean_in_flight": steady_in_flight(state, ends),
        "calls": dict(sorted(state.calls.items())),
        "webhooks_delivered": sum(1 for d in deliveries if d.delivered),
        "webhooks_gave_up": sum(1 for d in deliveries if d.gave_up),
        "webhook_posts": sum(len(d.attempts) for d in deliveries),
    }
    polls = state.calls.get("/task/openapi/outputs", 0)
    before = sum(1 for r in done if r.webhook_at is not None and r.step_finished and r.webhook_at <= r.step_finished)
    report.completion = {
        "steps_completed_by_poll": sum(1 for r in done if r.step_finished is not None),
        "webhooks_recorded": sum(1 for r in rows if r.webhook_at is not None),
        "webhook_before_step_end": before,
        "outputs_polls": polls,
        "polls_per_task": polls / max(1, len(rows)),
        "step_attempts_max": max((r.step_attempts for r in rows), default=0),
        "tasks_run_twice": sum(1 for r in rows if r.runs > 1),
    }
    report.statuses = dict(Counter(r.status for r in rows))


def steady_in_flight(state: Any, ends: Sequence[float]) -> float:
    """The peer's mean tasks in flight (QUEUED + RUNNING), time-weighted, while 10 % .. 90 % of the
    tasks ended: how full the cap was kept while tasks were waiting for it."""
    if len(ends) < 10:
        return float("nan")
    offset = time.time() - time.monotonic()
    lo, hi = ends[int(len(ends) * 0.1)], ends[int(len(ends) * 0.9) - 1]
    events = sorted(
        [(t.created_at + offset, 1) for t in state.tasks.values()]
        + [(t.finished_at + offset, -1) for t in state.tasks.values() if t.finished_at is not None]
    )
    level, area, last = 0, 0.0, lo
    for at, delta in events:
        if at > lo:
            area += level * (min(at, hi) - last)
            last = min(at, hi)
        if at >= hi:
            break
        level += delta
    area += level * (hi - last)
    return area / max(1e-9, hi - lo)


def run_checks(report: Report, rows: list[TaskRow], created: list[Creation], args: argparse.Namespace) -> None:
    accepted = sum(1 for c in created if c.status == 202)
    failed = [f"{r.public_id} {r.status} {r.error_code}" for r in rows if r.status != "succeeded"][:5]
    mapped = sum(1 for r in rows if r.vendor_created is not None)
    report.checks = [
        Check("every creation answered 202", accepted == args.tasks, f"{accepted} of {args.tasks}"),
        Check("every task succeeded", not failed and len(rows) == args.tasks, f"{report.statuses} {failed}"),
        Check(
            f"peak in flight at the peer ≤ cap {args.cap}",
            report.peer["peak_in_flight"] <= args.cap,
            f"peak {report.peer['peak_in_flight']}",
        ),
        Check("no 421 TASK_QUEUE_MAXED", report.peer["refusals_421"] == 0, f"{report.peer['refusals_421']} refusals"),
        Check(
            f"exactly {args.tasks} vendor creates, one per task",
            report.peer["creates"] == args.tasks == mapped,
            f"{report.peer['creates']} creates, {mapped} tasks found by their vendor id",
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def render(report: Report) -> str:
    s = report.settings
    lines = [
        f"# Wardrobe vendor-path benchmark — {report.started}",
        "",
        f"- Command: `{report.command}`",
        f"- Machine: {report.machine}",
        f"- Software: {report.software}",
        f"- Set-up: {s['tasks']} outfit-change tasks ({s['users']} users in turn), "
        + (f"created at {s['rate']}/s" if s["rate"] else f"created at once ({s['lanes']} requests in flight)")
        + f"; RunningHub peer cap C = {s['cap']}, vendor time {s['queued_s']} s queued + {s['running_s']} s running; "
        f"1 API process, {s['workers']} worker processes (worker concurrency {s['worker_concurrency']}), "
        f"provider_concurrency runninghub = {s['cap']}, poll interval {s['poll_interval']} s",
        f"- Machine busy before the run: {report.busy_before:.2f} cores elsewhere",
        f"- Whole run: {report.seconds:.0f} s; checks: **{'PASS' if report.passed else 'FAIL'}**",
        "",
        "## Throughput",
        "",
        "| tasks | creation span s | wall s (first created → last terminal) | tasks/s | steady tasks/s (10–90 %) "
        "| ideal C/(q+r) | achieved / ideal | vendor slot utilisation |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {s['tasks']} | {_fmt(report.creation['span_s'], 2)} | {_fmt(report.wall_s, 1)} "
        f"| {_fmt(report.throughput, 2)} | {_fmt(report.steady_throughput, 2)} | {_fmt(report.ideal, 2)} "
        f"| {_fmt(report.throughput / report.ideal * 100, 1)} % | {_fmt(report.utilisation * 100, 1)} % |",
        "",
        f"Creation requests: p50 {_fmt(report.creation['p50_ms'], 1)} ms, p95 {_fmt(report.creation['p95_ms'], 1)} ms, "
        f"max {_fmt(report.creation['max_ms'], 1)} ms.",
        "",
        "## Latency per task (seconds)",
        "",
        "| phase | n | mean | p50 | p95 | max |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, d in report.latency.items():
        lines.append(
            f"| {name} | {d['n']} | {_fmt(d['mean'], 3)} | {_fmt(d['p50'], 3)} | {_fmt(d['p95'], 3)} "
            f"| {_fmt(d['max'], 3)} |"
        )
    p, c = report.peer, report.completion
    lines += [
        "",
        "## At the peer, and how steps completed",
        "",
        f"- Creates: {p['creates']}; peak in flight: {p['peak_in_flight']} (cap {s['cap']}); 421 refusals: "
        f"{p['refusals_421']}; other refusals by code: {p['refusals_other'] or 'none'} ({p['polls_not_ready']:,} polls "
        f"answered 813/804, not ready yet); mean in flight while 10–90 % of the tasks ended: "
        f"{_fmt(p['steady_mean_in_flight'], 2)} of {s['cap']}",
        f"- Calls by path: {', '.join(f'`{k}` {v:,}' for k, v in p['calls'].items())}",
        f"- Webhooks: {p['webhooks_delivered']} delivered, {p['webhooks_gave_up']} given up, "
        f"{p['webhook_posts']} posts; "
        f"{c['webhooks_recorded']} recorded by the API, {c['webhook_before_step_end']} of them before the step ended",
        f"- Steps completed by a poll of `/outputs`: {c['steps_completed_by_poll']} (a webhook wakes the step's "
        f"poll); {c['outputs_polls']:,} polls, {_fmt(c['polls_per_task'], 1)} per task; most attempts of a step: "
        f"{c['step_attempts_max']}; tasks run more than once: {c['tasks_run_twice']}",
        "",
        "## CPU over the run (creation start → last terminal)",
        "",
        "| process | CPU s | cores | ms per task |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, cpu_s in report.cpu.items():
        if name == "wall_s" or name == "machine_busy_cores":
            continue
        lines.append(
            f"| {name} | {_fmt(cpu_s, 1)} | {_fmt(cpu_s / report.cpu['wall_s'], 2)} "
            f"| {_fmt(cpu_s / s['tasks'] * 1000, 1)} |"
        )
    lines += [f"| whole machine (busy cores) | – | {_fmt(report.cpu['machine_busy_cores'], 2)} | – |", ""]
    lines += ["## Checks", "", "| check | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {'PASS' if c.ok else 'FAIL'} | {c.detail} |" for c in report.checks]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def wait_for_consumers(count: int, procs: Sequence[Started]) -> None:
    """Until ``count`` readers wait on the task stream (each worker has one), bounded."""
    client = STORES.redis(decode_responses=True)
    db = str(STORES.redis_db)
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            for proc in procs:
                if not proc.alive():
                    raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            # A reader blocked on the stream shows as a client whose last command is XREADGROUP (the
            # group lists a consumer only once it was handed a message).
            consumers = sum(1 for c in client.client_list() if c.get("cmd") == "xreadgroup" and c.get("db") == db)
            if consumers >= count:
                return
            time.sleep(0.2)
    finally:
        client.close()
    raise BenchError(f"the workers did not read the task stream within {WORKER_START_TIMEOUT_S:.0f} s")


def cpu_of(pids: Sequence[int]) -> float:
    return sum(sum(tree_cpu_ticks(pid).values()) for pid in pids) / CLOCK_TICKS


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench(registry: Registry, work: Path, report: Report, args: argparse.Namespace) -> None:
    (work / "wardrobe-var").mkdir()
    secret = secrets.token_urlsafe(32)  # per run, never stored
    api_port = free_port()
    with Peer(args.cap, args.queued_s, args.running_s) as peer:
        say(
            f"RunningHub peer on {peer.base_url}: cap {args.cap}, {args.queued_s} s queued + {args.running_s} s running"
        )
        env = wardrobe_env(work, secret, peer.base_url, api_port, args)
        mariadb = STORES.recreate_database()
        report.machine, report.software = machine_and_software(None, mariadb)
        migrate(work, env)
        STORES.cleanup_redis()
        users = list(range(1, args.users + 1))
        admin = args.users + 1
        say(f"creating {args.users} users (and an admin) with a session each, and their quota")
        tokens = STORES.users(args.users + 1, secret, admins={admin})
        per_user = -(-args.tasks // args.users)
        asyncio.run(grant_quota(users, per_user, admin))
        admin_token = tokens.pop(admin)

        base = f"http://{LOOPBACK}:{api_port}"
        api = registry.start(
            "wardrobe serve",
            [str(VENV_BIN / "wardrobe"), "serve", "--host", LOOPBACK, "--port", str(api_port), "--workers", "1"],
            env,
            work,
            work / "wardrobe-serve.log",
        )
        wait_until_up(api, api_port, "/health")
        asyncio.run(make_feature(base, admin_token, args))
        say(f"uploading 2 images for each of {args.users} users")
        images = asyncio.run(upload_images(base, tokens, args.lanes))
        workers = [
            registry.start(
                f"wardrobe worker {i}",
                [str(VENV_BIN / "wardrobe"), "worker"],
                env,
                work,
                work / f"wardrobe-worker-{i}.log",
            )
            for i in range(1, WORKERS + 1)
        ]
        wait_for_consumers(WORKERS, workers)
        say(f"{WORKERS} workers read the task stream")
        report.busy_before = wait_for_idle(args.wait_idle)

        db_pids, redis_pids = pids_by_name("mariadbd", "mysqld"), pids_by_name("redis-server")
        cpu0 = {
            "API (wardrobe serve)": cpu_of([api.pid]),
            **{f"worker {i + 1}": cpu_of([w.pid]) for i, w in enumerate(workers)},
            "MariaDB": pids_cpu_ticks(db_pids) / CLOCK_TICKS,
            "Redis": pids_cpu_ticks(redis_pids) / CLOCK_TICKS,
            "bench process (peer + clients)": self_cpu(),
        }
        busy0, t0 = machine_busy_ticks(), time.monotonic()
        mode = f"at {args.rate}/s" if args.rate else f"at once ({args.lanes} in flight)"
        say(f"creating {args.tasks} tasks {mode}")

        async def go() -> tuple[list[Creation], float]:
            created = await create_tasks(base, tokens, images, args)
            bad = [c for c in created if c.status != 202]
            if bad:
                raise BenchError(f"{len(bad)} creations not accepted, first: HTTP {bad[0].status} {bad[0].error}")
            say(f"  {len(created)} created in {max(c.answered for c in created) - min(c.sent for c in created):.2f} s")
            end = await watch(args.tasks, args.task_timeout, [api, *workers])
            return created, end

        created, end = asyncio.run(go())
        busy1, wall = machine_busy_ticks(), time.monotonic() - t0
        cpu1 = {
            "API (wardrobe serve)": cpu_of([api.pid]),
            **{f"worker {i + 1}": cpu_of([w.pid]) for i, w in enumerate(workers)},
            "MariaDB": pids_cpu_ticks(db_pids) / CLOCK_TICKS,
            "Redis": pids_cpu_ticks(redis_pids) / CLOCK_TICKS,
            "bench process (peer + clients)": self_cpu(),
        }
        report.cpu = {name: cpu1[name] - cpu0[name] for name in cpu0}
        report.cpu["wall_s"] = wall
        report.cpu["machine_busy_cores"] = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * CPU_COUNT
        say(f"all {args.tasks} terminal after {wall:.1f} s; up to {WEBHOOK_SETTLE_S:.0f} s more for the last webhooks")
        settle = time.monotonic() + WEBHOOK_SETTLE_S
        while time.monotonic() < settle and not all(d.finished for d in list(peer.state.deliveries) if d.started):
            time.sleep(0.2)

        answer_ms = [(c.answered - c.sent) * 1000 for c in created]
        report.creation = {
            "span_s": max(c.answered for c in created) - min(c.sent for c in created),
            "p50_ms": percentile(answer_ms, 50),
            "p95_ms": percentile(answer_ms, 95),
            "max_ms": max(answer_ms),
        }
        rows = read_tasks(peer)
        figures(report, rows, peer, args, end)
        run_checks(report, rows, created, args)
        # End to end: one task's output is our stored image.
        sample = next((c for c in created if c.public_id), None)
        if sample is not None:
            sanity_output(base, tokens[sample.user_id], sample.public_id, report)
        for proc in reversed(workers):
            registry.stop(proc)
        registry.stop(api)


def sanity_output(base: str, token: str, public_id: str, report: Report) -> None:
    import httpx

    with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as client:
        task = client.get(f"/api/v1/tasks/{public_id}", headers={"Authorization": f"Bearer {token}"}).json()["data"]
        outputs = task.get("outputs") or []
        ok, detail = False, f"task {public_id}: {task.get('status')}, {len(outputs)} outputs"
        if outputs and outputs[0].get("url"):
            image = client.get(outputs[0]["url"])
            ok = image.status_code == 200 and image.headers.get("content-type") == "image/png"
            detail += f"; GET its output: HTTP {image.status_code} {image.headers.get('content-type')}"
    report.checks.append(Check("a task's output is served by us as a PNG", ok, detail))


def report_json(report: Report) -> dict[str, Any]:
    data = asdict(report)
    data["passed"] = report.passed
    return data


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 dev.py bench-vendors",
        description="Tasks through the RunningHub peer at its concurrency cap: throughput and the engine's added "
        "latency, on MariaDB + Redis with 1 API and 2 worker processes. See bench/README.md.",
    )
    parser.add_argument("--tasks", type=_bounded(1, 5000, int), default=200, help="tasks (200)")
    parser.add_argument("--users", type=_bounded(1, 5000, int), default=100, help="their owners, in turn (100)")
    parser.add_argument(
        "--cap", type=_bounded(1, 100, int), default=3, help="the key's cap at the peer = our limit (3)"
    )
    parser.add_argument("--queued-s", type=_bounded(0, 60), default=0.2, help="vendor time QUEUED per task, s (0.2)")
    parser.add_argument("--running-s", type=_bounded(0.01, 600), default=1.0, help="vendor time RUNNING, s (1.0)")
    parser.add_argument(
        "--poll-interval", type=_bounded(0.01, 60), default=0.25, help="the step's poll interval (0.25)"
    )
    parser.add_argument("--step-timeout", type=_bounded(10, 3600), default=300.0, help="the step's timeout, s (300)")
    parser.add_argument(
        "--rate", type=_bounded(0, 1000), default=0.0, help="creations per second on a fixed schedule (0: all at once)"
    )
    parser.add_argument("--lanes", type=_bounded(1, 500, int), default=50, help="requests in flight when at once (50)")
    parser.add_argument(
        "--task-timeout", type=_bounded(10, 7200), default=900.0, help="bound on the whole run, s (900)"
    )
    parser.add_argument("--wait-idle", type=_bounded(0, 600), default=30.0, help="wait up to this long for quiet (30)")
    parser.add_argument(
        "--wardrobe-env", action="append", default=[], metavar="WARDROBE_NAME=VALUE", help="extra setting, repeatable"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "vendors.md", help="report (bench/results/vendors.md)"
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary folder (server and worker logs)")
    args = parser.parse_args(argv)
    try:
        args.extra_env = extra_settings(args.wardrobe_env, VENDOR_SETTINGS)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    report = Report(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command="python3 dev.py bench-vendors" + "".join(f" {a}" for a in argv),
    )
    concurrency = args.extra_env.get("WARDROBE_WORKER_CONCURRENCY")  # clean_env drops the shell's WARDROBE_*
    report.settings = {
        "tasks": args.tasks,
        "users": args.users,
        "cap": args.cap,
        "queued_s": args.queued_s,
        "running_s": args.running_s,
        "poll_interval": args.poll_interval,
        "rate": args.rate,
        "lanes": args.lanes,
        "workers": WORKERS,
        "worker_concurrency": int(concurrency) if concurrency else 8,
        "wardrobe_env": args.extra_env,
    }

    def measure(registry: Registry, work: Path) -> int:
        bench(registry, work, report, args)
        report.seconds = time.monotonic() - _T0
        return write_report(args.output, render(report), report_json(report), passed=report.passed)

    return run_bench(
        measure, temp_prefix="wardrobe-bench-vendors-", keep_temp=args.keep_temp, cleanup=STORES.cleanup_redis
    )


if __name__ == "__main__":
    sys.exit(main())
