"""What the task, live-push and vendor benchmarks (tasks_flow.py, realtime.py, vendors.py) share on
top of bench/run.py (its process registry, CPU sampling, idle wait and database helpers):

- ``Stores``: the MariaDB database and the Redis keys a benchmark owns, the environment and settings
  of the Wardrobe processes it starts on them, its users and their access tokens;
- the command line: ``--wardrobe-env`` items, lists of rates;
- the report: the machine and software line, nearest-rank percentiles, checks, writing it out;
- ``run_bench``: a run in a temporary folder that stops every process it started, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from run import (
    LOOPBACK,
    MIGRATE_TIMEOUT_S,
    MYSQL_ROOT_URL,
    VENV_BIN,
    BenchError,
    Registry,
    _on_sigterm,
    _prepare_wardrobe_db,
    _recreate_database,
    clean_env,
    delete_redis_keys,
    run_step,
    say,
)

if TYPE_CHECKING:
    from redis import Redis

    from wardrobe.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

TOKEN_TTL_S = 7200  # longer than any run: no token expires under load
# Set by the scripts; --wardrobe-env can't change them (the database, the tokens and the
# dedicated-worker deployment depend on them). A script adds its own.
FIXED_SETTINGS = (
    "WARDROBE_DATABASE_URL",
    "WARDROBE_REDIS_URL",
    "WARDROBE_REDIS_KEY_PREFIX",
    "WARDROBE_JWT_SECRET",
    "WARDROBE_VAR_DIR",
    "WARDROBE_WORKER_IN_PROCESS",
)


# ---------------------------------------------------------------------------------------------
# The stores of a run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stores:
    """The MariaDB database a benchmark re-creates and the Redis database and key prefix it uses
    (its keys are deleted at the end), all on 127.0.0.1."""

    db_name: str
    redis_db: int
    redis_prefix: str

    @property
    def db_url(self) -> str:
        return f"{MYSQL_ROOT_URL}/{self.db_name}?charset=utf8mb4"

    @property
    def redis_url(self) -> str:
        return f"redis://{LOOPBACK}:6379/{self.redis_db}"

    def wardrobe_env(self, work: Path, secret: str, **settings: str) -> dict[str, str]:
        """The environment of every Wardrobe process of the run (API servers, workers, migrate),
        with ``settings`` on top: a dedicated-worker deployment, in which the API processes create
        and publish tasks and only `wardrobe worker` processes run them."""
        return clean_env(
            **{
                "WARDROBE_DATABASE_URL": self.db_url,
                "WARDROBE_REDIS_URL": self.redis_url,
                "WARDROBE_REDIS_KEY_PREFIX": self.redis_prefix,
                "WARDROBE_JWT_SECRET": secret,
                "WARDROBE_ACCESS_TOKEN_TTL_SECONDS": str(TOKEN_TTL_S),
                "WARDROBE_LOG_LEVEL": "WARNING",
                "WARDROBE_SEED_DEMO_DATA": "false",
                "WARDROBE_AUTO_MIGRATE": "false",
                "WARDROBE_VAR_DIR": str(work / "wardrobe-var"),
                "WARDROBE_WORKER_IN_PROCESS": "false",
                **settings,
            }
        )

    def settings(self, work: Path) -> Settings:
        """Settings for the code a script runs in its own processes (data, the publisher...)."""
        from wardrobe.settings import Settings

        return Settings(
            _env_file=None,
            database_url=self.db_url,
            redis_url=self.redis_url,
            redis_key_prefix=self.redis_prefix,
            var_dir=work / "wardrobe-var",
            worker_in_process=False,
            log_level="WARNING",
        )

    def recreate_database(self) -> str:
        """Drop and create the database; MariaDB's version."""
        say(f"MariaDB: recreating database {self.db_name}")
        return asyncio.run(_recreate_database(self.db_name))

    def users(self, count: int, secret: str, *, admins: Collection[int] = ()) -> dict[int, str]:
        """Users 1..``count`` in the migrated database, each with one login session and an access
        token for it (signed with the run's ``secret``), by user id. Nobody logs in: the password
        is random and forgotten."""
        from wardrobe.core.security import TokenCodec, hash_password_sync
        from wardrobe.settings import Settings

        password_hash = hash_password_sync(secrets.token_hex(8) + "a1")
        sessions = asyncio.run(_prepare_wardrobe_db(self.db_url, count, password_hash))
        defaults = Settings(_env_file=None, database_url=self.db_url)
        codec = TokenCodec(secret, defaults.jwt_issuer, defaults.jwt_audience, TOKEN_TTL_S)
        return {uid: codec.issue_access(uid, "admin" if uid in admins else "user", sid) for uid, sid in sessions}

    def redis(self, **options: Any) -> Redis:
        from redis import Redis

        return Redis.from_url(self.redis_url, socket_timeout=5, **options)

    def cleanup_redis(self) -> None:
        """Remove this run's keys (task stream, limiter windows, slots, provider health)."""
        delete_redis_keys(self.redis_url, self.redis_prefix)


def migrate(work: Path, env: dict[str, str]) -> None:
    run_step("wardrobe migrate", [str(VENV_BIN / "wardrobe"), "migrate"], cwd=work, env=env, timeout=MIGRATE_TIMEOUT_S)


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def rates(high: int, *, in_order: bool = False) -> Callable[[str], list[int]]:
    """An argparse type: comma-separated rates from 1 to ``high``, sorted without repeats, or with
    ``in_order`` as given (one stage each)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(x) for x in text.split(",") if x.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
        if not values or min(values) < 1 or max(values) > high:
            raise argparse.ArgumentTypeError(f"rates must be between 1 and {high}")
        return values if in_order else sorted(set(values))

    return parse


def extra_settings(items: Sequence[str], fixed: Sequence[str]) -> dict[str, str]:
    """The ``--wardrobe-env WARDROBE_NAME=VALUE`` items; ValueError (the message for the user) for
    one that is not of that form or sets one of ``fixed``."""
    found: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("WARDROBE_") or name in fixed:
            raise ValueError(f"--wardrobe-env wants WARDROBE_NAME=VALUE, other than {', '.join(fixed)}: {item!r}")
        found[name] = value
    return found


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def machine_and_software(k6: Path | None, mariadb: str) -> tuple[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    kib = next(
        (int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:")), 0
    )
    k6_version = run_step("k6 version", [str(k6), "version"], cwd=ROOT, timeout=30).split("(")[0].strip() if k6 else ""
    machine = (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores, {kib / 2**20:.1f} GiB, {platform.system()} {platform.release()}"
    )
    software = [f"Python {platform.python_version()}", k6_version, f"MariaDB {mariadb}", wardrobe_source()]
    return machine, ", ".join(x for x in software if x)


def wardrobe_source() -> str:
    """Which code ran: the package's folder, and the commit with or without local changes."""
    import wardrobe

    package = Path(wardrobe.__file__).resolve().parent
    git = ["git", "-C", str(ROOT)]
    commit = run_step("git commit", [*git, "rev-parse", "--short", "HEAD"], cwd=ROOT, timeout=30).strip()
    changed = run_step("git status", [*git, "status", "--porcelain", "src"], cwd=ROOT, timeout=30).strip()
    where = "src/wardrobe" if package == ROOT / "src" / "wardrobe" else str(package)
    return f"Wardrobe from {where} (repository at {commit}{', src/ with uncommitted changes' if changed else ''})"


def write_report(output: Path, markdown: str, data: dict[str, Any], *, passed: bool = True) -> int:
    """``output`` (Markdown) and the same name in .json, the Markdown printed; the exit status:
    1 when a check did not hold."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown)
    output.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str))
    print(markdown)
    say(f"written to {output} (and {output.with_suffix('.json').name})")
    if not passed:
        say("FAILED: a check did not hold (see the report)")
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def run_bench(
    measure: Callable[[Registry, Path], int], *, temp_prefix: str, keep_temp: bool, cleanup: Callable[[], None]
) -> int:
    """``measure(registry, work)`` with a new process registry and temporary folder; its exit status,
    1 on a BenchError, 130 on Ctrl-C or SIGTERM. Whatever happens, every process in the registry is
    stopped by id, ``cleanup`` runs and the folder goes (unless ``keep_temp``)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    registry = Registry()
    work = Path(tempfile.mkdtemp(prefix=temp_prefix))
    say(f"temporary folder {work}")
    try:
        return measure(registry, work)
    except BenchError as exc:
        say(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: stopping everything started")
        return 130
    finally:
        registry.stop_all()
        cleanup()
        if keep_temp:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
