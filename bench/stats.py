"""Statistics at scale: the overview and the rollup job over 10 million tasks on MariaDB.

Fills a bench database (never the test one) with a year of history — users, tasks ending now with
steps on a share of them, ledger rows, paid orders and refunds — by ``INSERT … SELECT`` from
MariaDB's sequence tables in batches, then measures:

1. the overview computed wholly live (nothing rolled up yet) for 1 and 7 days;
2. the rollup job over the whole year (what a first run after a migration would catch up), and
   the job as the scheduler runs it every 15 minutes, and the recomputation of one day;
3. the overview for 7/30/90/365 days ending today: the first call on a fresh connection, then the
   median of several calls;
4. EXPLAIN of every query of a live day and of the range's distinct active users.

``python3 dev.py bench-stats --help`` lists the options; the report goes to
``bench/results/stats.md`` (and ``.json``).
"""

# The SQL here is built from integers and constants of this script only, never from input.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_and_software, say, write_report
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache, Policy
from wardrobe.core.db import create_engine, create_session_factory
from wardrobe.migrations import runner
from wardrobe.models import StatsDaily
from wardrobe.models.base import utcnow
from wardrobe.modules.admin.stats import jobs, repository, service
from wardrobe.modules.admin.stats.figures import intervals
from wardrobe.settings import Settings

DEFAULT_SERVER = "mysql+asyncmy://root@127.0.0.1:3306"
FEATURES = ("'cutout'", "'restyle'", "'upscale'", "'portrait'", "'tryon'", "'bgswap'")
VENDORS = ("'runninghub'", "'hunyuan'", "'tencent_imaging'")
CHANNELS = ("'wechat_jsapi'", "'wechat_native'", "'alipay_page'", "'alipay_wap'", "'alipay_qr'")
RANGES = (7, 30, 90, 365)
# Set for the fill only when --tune is given, restored at the end (never on a shared server by
# default: they are global).
TUNED = {"innodb_flush_log_at_trx_commit": "2", "innodb_log_file_size": str(1 << 30)}


def _elt(n: str, values: tuple[str, ...]) -> str:
    return f"ELT(1 + ({n}) MOD {len(values)}, {', '.join(values)})"


class Filler:
    """The history, written with one INSERT … SELECT per batch from ``seq_A_to_B``: task ``n`` is
    created at ``t0 + n × step`` (so ids follow time, as in production), groups of 5 consecutive
    tasks belong to one user, spread over every user."""

    def __init__(self, args: argparse.Namespace, now: datetime) -> None:
        self.args = args
        self.now = now.replace(microsecond=0)
        self.t0 = datetime.combine(now.date() - timedelta(days=args.days - 1), datetime.min.time(), tzinfo=UTC)
        self.step_us = int((self.now - self.t0).total_seconds() * 1e6) // args.tasks

    def stamp(self, at: datetime) -> str:
        return at.astimezone(UTC).strftime("'%Y-%m-%d %H:%M:%S'")

    def created(self, n: str, step_us: int | None = None) -> str:
        return f"DATE_ADD({self.stamp(self.t0)}, INTERVAL ({n}) * {step_us or self.step_us} MICROSECOND)"

    def users(self) -> list[str]:
        u = self.args.users
        # Sign-ups spread over the year and the two months before it.
        step = int((self.now - self.t0 + timedelta(days=60)).total_seconds() * 1e6) // u
        since = self.t0 - timedelta(days=60)
        at = f"DATE_ADD({self.stamp(since)}, INTERVAL seq * {step} MICROSECOND)"
        return [
            "INSERT INTO users (id, invite_code, role, status, gender, profile_completed, created_at, updated_at) "
            f"SELECT seq, CONCAT('b', seq), 'user', 'active', 'unknown', 0, {at}, {at} FROM seq_1_to_{u}",
            "INSERT INTO quota_ledger (user_id, kind, amount, hold_delta, balance_after, held_after, ref, created_at) "
            "SELECT id, 'grant', 10, 0, 10, 0, CONCAT('signup:', id), created_at FROM users",
        ]

    def tasks(self, first: int, last: int) -> list[str]:
        status = (
            f"CASE WHEN {self.created('seq')} > {self.stamp(self.now - timedelta(minutes=10))} THEN "
            "IF(seq MOD 3 = 0, 'queued', 'running') "
            "WHEN (seq * 37) MOD 100 < 86 THEN 'succeeded' WHEN (seq * 37) MOD 100 < 94 THEN 'failed' "
            "ELSE 'canceled' END"
        )
        duration_us = "FLOOR(400000 * POW(2, ((seq * 13) MOD 100) / 10))"
        seq = f"seq_{first}_to_{last}"
        return [
            "INSERT INTO tasks (id, public_id, user_id, feature_key, pipeline_schema_id, status, progress, inputs, "
            "outputs, quota_cost, eligible_for_refund, refunded, cancel_requested, request_hash, runs, created_at, "
            "updated_at, started_at, finished_at) "
            f"SELECT seq, CONCAT('b', seq), 1 + ((seq DIV 5) * 7919) MOD {self.args.users}, "
            f"{_elt('seq DIV 5 + seq', FEATURES)}, 1, s.status, 100, '{{}}', '[]', 1, 1, 0, 0, 'x', 1, "
            "s.created, s.created, IF(s.status = 'queued', NULL, DATE_ADD(s.created, INTERVAL 1 SECOND)), "
            f"IF(s.status IN ('queued', 'running'), NULL, DATE_ADD(s.created, INTERVAL 1000000 + {duration_us} "
            "MICROSECOND)) "
            f"FROM (SELECT seq, {self.created('seq')} AS created, {status} AS status FROM {seq}) s",
            # Two steps for one task in four: a vendor, then the local provider.
            "INSERT INTO task_steps (task_id, step_id, status, provider, attempts, outputs, updated_at) "
            f"SELECT id, 's1', 'succeeded', {_elt('id DIV 4', VENDORS)}, 1, '{{}}', created_at FROM tasks "
            f"WHERE id BETWEEN {first} AND {last} AND id MOD 4 = 0",
            "INSERT INTO task_steps (task_id, step_id, status, provider, attempts, outputs, updated_at) "
            f"SELECT id, 's2', 'succeeded', 'local', 1, '{{}}', created_at FROM tasks "
            f"WHERE id BETWEEN {first} AND {last} AND id MOD 4 = 0",
            # The ledger of the same tasks: the hold, then its confirmation or release.
            "INSERT INTO quota_ledger (user_id, kind, amount, hold_delta, balance_after, held_after, ref, created_at) "
            "SELECT user_id, 'reserve', 0, 1, 10, 1, CONCAT('task:', public_id), created_at FROM tasks "
            f"WHERE id BETWEEN {first} AND {last} AND id MOD 4 = 0",
            "INSERT INTO quota_ledger (user_id, kind, amount, hold_delta, balance_after, held_after, ref, created_at) "
            "SELECT user_id, IF(status = 'succeeded', 'confirm', 'cancel'), IF(status = 'succeeded', -1, 0), -1, 9, "
            "0, CONCAT('task:', public_id), LEAST(finished_at, NOW(6)) FROM tasks "
            f"WHERE id BETWEEN {first} AND {last} AND id MOD 4 = 0 AND finished_at IS NOT NULL",
        ]

    def orders(self) -> list[str]:
        count = self.args.orders
        step = int((self.now - self.t0).total_seconds() * 1e6) // count
        paid = f"DATE_ADD({self.stamp(self.t0)}, INTERVAL seq * {step} MICROSECOND)"
        return [
            "INSERT INTO orders (id, order_no, user_id, sku, kind, name, quota, channel, amount_fen, status, paid_fen, "
            "refunded_fen, refund_pending_fen, quota_clawed, expires_at, paid_at, fulfilled_at, created_at, "
            "updated_at) "
            f"SELECT seq, CONCAT('o', seq), 1 + (seq * 104729) MOD {self.args.users}, 'pack', 'quota_pack', 'pack', "
            f"100, {_elt('seq', CHANNELS)}, 990 * (1 + seq MOD 4), 'fulfilled', 990 * (1 + seq MOD 4), 0, 0, 0, "
            f"DATE_ADD({paid}, INTERVAL 29 MINUTE), {paid}, {paid}, DATE_ADD({paid}, INTERVAL -1 MINUTE), {paid} "
            f"FROM seq_1_to_{count}",
            "INSERT INTO quota_ledger (user_id, kind, amount, hold_delta, balance_after, held_after, ref, created_at) "
            "SELECT user_id, 'purchase', quota, 0, 110, 0, CONCAT('order:', order_no), paid_at FROM orders",
            # One order in forty half refunded an hour after it was paid.
            "INSERT INTO refunds (refund_no, order_id, amount_fen, quota, reason, status, created_at, settled_at) "
            "SELECT CONCAT('r', id), id, paid_fen DIV 2, 0, 'bench', 'succeeded', paid_at, "
            "DATE_ADD(paid_at, INTERVAL 1 HOUR) FROM orders WHERE id MOD 40 = 0 "
            f"AND paid_at < {self.stamp(self.now - timedelta(hours=1))}",
        ]


# Secondary indexes no foreign key needs are dropped for the fill and built again after it, in
# one sorted pass per table: several times faster than maintaining them row by row.
DEFERRED_INDEXES = {
    "tasks": (
        "uq_tasks_public_id",
        "uq_tasks_user_id_idempotency_key",
        "ix_tasks_status_lease",
        "ix_tasks_status_id",
        "ix_tasks_user_id_feature_id",
        "ix_tasks_user_id_status_id",
        "ix_tasks_files_purged_at_finished_at",
        "ix_tasks_created_at_user_id",
    ),
    "quota_ledger": ("uq_quota_ledger_kind_ref", "ix_quota_ledger_kind_created_at"),
}


async def drop_deferred_indexes(engine: AsyncEngine) -> dict[str, str]:
    """Drop the deferred indexes; the ALTER TABLE clause that builds each table's again."""
    rebuild: dict[str, str] = {}
    async with engine.connect() as conn:
        for table, names in DEFERRED_INDEXES.items():
            rows = await conn.exec_driver_sql(
                "SELECT INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "
                "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
                "GROUP BY INDEX_NAME, NON_UNIQUE",
                (table,),
            )
            found = {name: (unique == 0, columns) for name, unique, columns in rows}
            clauses = [f"ADD {'UNIQUE ' if found[name][0] else ''}INDEX {name} ({found[name][1]})" for name in names]
            rebuild[table] = ", ".join(clauses)
            await conn.exec_driver_sql(f"ALTER TABLE {table} " + ", ".join(f"DROP INDEX {name}" for name in names))
    return rebuild


async def _execute(engine: AsyncEngine, statements: list[str]) -> None:
    async with engine.connect() as conn:
        # Generated rows: their references and keys hold by construction.
        await conn.exec_driver_sql("SET SESSION foreign_key_checks = 0, unique_checks = 0")
        for sql in statements:
            await conn.exec_driver_sql(sql)
            await conn.commit()


async def fill(engine: AsyncEngine, args: argparse.Namespace, now: datetime) -> dict[str, float]:
    filler = Filler(args, now)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    await _execute(
        engine,
        [
            "INSERT INTO pipeline_schemas (id, `key`, version, definition, created_at) "
            "VALUES (1, 'bench', 1, '{}', NOW(6))",
            *filler.users(),
        ],
    )
    timings["users"] = time.perf_counter() - started
    rebuild = await drop_deferred_indexes(engine)
    mark = time.perf_counter()
    for first in range(1, args.tasks + 1, args.batch):
        last = min(args.tasks, first + args.batch - 1)
        await _execute(engine, filler.tasks(first, last))
        say(f"fill: tasks {last:,} of {args.tasks:,} ({time.perf_counter() - mark:.0f} s)")
    timings["tasks, steps, ledger"] = time.perf_counter() - mark
    mark = time.perf_counter()
    await _execute(engine, filler.orders())
    timings["orders, refunds"] = time.perf_counter() - mark
    mark = time.perf_counter()
    for table, clauses in rebuild.items():
        say(f"fill: building the indexes of {table} again")
        await _execute(engine, [f"ALTER TABLE {table} {clauses}"])
    timings["indexes"] = time.perf_counter() - mark
    await _execute(engine, ["ANALYZE TABLE users, tasks, task_steps, quota_ledger, orders, refunds"])
    timings["total"] = time.perf_counter() - started
    return timings


async def counts(engine: AsyncEngine) -> dict[str, int]:
    tables = ("users", "tasks", "task_steps", "quota_ledger", "orders", "refunds", "stats_daily_active_users")
    async with engine.connect() as conn:
        return {t: int((await conn.exec_driver_sql(f"SELECT COUNT(*) FROM {t}")).scalar_one()) for t in tables}


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call()
    return (time.perf_counter() - started) * 1000, result


def new_cache() -> Cache:
    return Cache(None, "bench-stats", {service.ACTIVE_USERS_CACHE: Policy(ttl=3600)})


async def overview_ms(
    factory: async_sessionmaker[AsyncSession], days: int, today: date, repeats: int
) -> dict[str, Any]:
    """Milliseconds of the overview of the last ``days`` days: the first call (an empty cache),
    the median of ``repeats`` more with the process's cache as it then is, and the median of
    ``repeats`` with an empty cache each (the first call of any range)."""
    cache = new_cache()

    async def once(cache: Cache) -> dict[str, Any]:
        async with factory() as session:
            result: dict[str, Any] = await service.overview(
                session, cache, start=today - timedelta(days=days - 1), end=today, today=today
            )
            return result

    first, body = await timed(lambda: once(cache))
    warm = [(await timed(lambda: once(cache)))[0] for _ in range(repeats)]
    cold = [(await timed(lambda: once(new_cache())))[0] for _ in range(repeats)]
    return {
        "days": days,
        "first_ms": first,
        "median_ms": statistics.median(warm),
        "uncached_median_ms": statistics.median(cold),
        "tasks": body["totals"]["tasks"],
        "active_users": body["totals"]["active_users"],
    }


async def explain(engine: AsyncEngine, factory: async_sessionmaker[AsyncSession], today: date) -> list[dict[str, Any]]:
    """EXPLAIN of each statement a live day and a year's distinct active users run."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with factory() as session:
            await repository.live_figures(session, today, today)
            rolled = intervals(await repository.final_days(session, today - timedelta(days=364), today))
            await repository.rolled_points(session, rolled)
            await repository.rolled_breakdown(session, rolled)
            await repository.distinct_rolled_users(session, rolled)
            await repository.distinct_live_users_not_rolled(session, [(today, today)], rolled)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    plans = []
    async with engine.connect() as conn:
        for statement, parameters in captured:
            result = await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            columns = list(result.keys())
            rows = [dict(zip(columns, row, strict=True)) for row in result.all()]
            plans.append({"sql": " ".join(statement.split()), "plan": rows})
    return plans


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    server = args.server
    settings = Settings(_env_file=None, database_url=f"{server}/?charset=utf8mb4", log_level="WARNING")
    admin = create_engine(settings)
    saved: dict[str, str] = {}
    try:
        async with admin.connect() as conn:
            version = str((await conn.exec_driver_sql("SELECT VERSION()")).scalar_one())
            if not args.skip_fill:
                await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{args.database}`")
                await conn.exec_driver_sql(f"CREATE DATABASE `{args.database}` CHARACTER SET utf8mb4")
            if args.tune:
                for name, value in {**TUNED, "innodb_buffer_pool_size": str(args.buffer_pool_mb << 20)}.items():
                    saved[name] = str((await conn.exec_driver_sql(f"SELECT @@GLOBAL.{name}")).scalar_one())
                    await conn.exec_driver_sql(f"SET GLOBAL {name} = {value}")
            pool_mb = int((await conn.exec_driver_sql("SELECT @@innodb_buffer_pool_size")).scalar_one()) >> 20
        engine = create_engine(settings, database_url=f"{server}/{args.database}?charset=utf8mb4")
        try:
            return await _measure_on(engine, args, version, pool_mb)
        finally:
            await engine.dispose()
    finally:
        if saved:
            async with admin.connect() as conn:
                for name, value in saved.items():
                    if name != "innodb_buffer_pool_size" or not args.keep_buffer_pool:
                        await conn.exec_driver_sql(f"SET GLOBAL {name} = {value}")
        await admin.dispose()


async def _measure_on(engine: AsyncEngine, args: argparse.Namespace, version: str, pool_mb: int) -> dict[str, Any]:
    factory = create_session_factory(engine)
    now = utcnow()
    today = now.date()
    result: dict[str, Any] = {"mariadb": version, "buffer_pool_mb": pool_mb, "args": vars(args)}
    if not args.skip_fill:
        say("migrating")
        await runner.upgrade(engine)
        say(f"filling {args.tasks:,} tasks over {args.days} days")
        result["fill_s"] = await fill(engine, args, now)
    result["rows"] = await counts(engine)
    say(f"rows: {result['rows']}")
    if not args.skip_fill:
        say("overview with nothing rolled up (all live)")
        result["live"] = [await overview_ms(factory, days, today, 2) for days in (1, 7)]
    say("rollup of the whole history")
    ms, days = await timed(lambda: jobs.roll_up_stats(factory, now=now, max_days=args.days + 90))
    result["rollup_all"] = {"ms": ms, "days": days}
    ms, days = await timed(lambda: jobs.roll_up_stats(factory))
    result["rollup_steady"] = {"ms": ms, "days": days}
    one = today - timedelta(days=args.days // 2)
    runs = []
    for _ in range(3):
        async with factory() as session, session.begin():
            await session.execute(StatsDaily.__table__.delete().where(StatsDaily.day == one))
        ms, days = await timed(lambda: jobs.roll_up_stats(factory))
        runs.append(ms)
    result["rollup_one_day"] = {"day": one.isoformat(), "median_ms": statistics.median(runs), "runs_ms": runs}
    result["rows"] = await counts(engine)
    yesterday = today - timedelta(days=1)
    runs = []
    for _ in range(3):
        async with factory() as session:
            ms, figures = await timed(lambda: repository.live_figures(session, yesterday, yesterday))
        runs.append(ms)
    tasks = sum(figures[yesterday].tasks.values())
    result["live_full_day"] = {"day": yesterday.isoformat(), "tasks": tasks, "median_ms": statistics.median(runs)}
    say("overview over ranges")
    result["overview"] = [await overview_ms(factory, days, today, args.repeats) for days in RANGES]
    result["explain"] = await explain(engine, factory, today)
    return result


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    machine, software = machine_and_software(None, result["mariadb"])
    rows = result["rows"]
    lines = [
        f"# Statistics over {rows['tasks']:,} tasks — {utcnow():%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `python3 dev.py bench-stats {' '.join(sys.argv[1:])}`".rstrip(),
        f"- Machine: {machine}",
        f"- Software: {software}; InnoDB buffer pool {result['buffer_pool_mb']:,} MiB",
        "- Rows: " + ", ".join(f"{name} {count:,}" for name, count in rows.items()),
    ]
    if "fill_s" in result:
        lines.append("- Fill: " + ", ".join(f"{k} {v:,.0f} s" for k, v in result["fill_s"].items()))
    lines += [
        "",
        "| overview | first call ms | median ms, cache warm | median ms, empty cache | tasks | active users |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, entries in (
        ("all live, nothing rolled up", result.get("live", [])),
        ("rolled up + today live", result["overview"]),
    ):
        for e in entries:
            lines.append(
                f"| {e['days']} days, {label} | {e['first_ms']:,.1f} | {e['median_ms']:,.1f} | "
                f"{e['uncached_median_ms']:,.1f} | {e['tasks']:,} | {e['active_users']:,} |"
            )
    lines += [
        "",
        f"Rollup job: whole history {result['rollup_all']['days']} days in {result['rollup_all']['ms'] / 1000:,.1f} s; "
        f"the scheduler's run afterwards ({result['rollup_steady']['days']} open days) "
        f"{result['rollup_steady']['ms']:,.0f} ms; one day recomputed (median of 3) "
        f"{result['rollup_one_day']['median_ms']:,.0f} ms. A whole day computed live (yesterday, "
        f"{result['live_full_day']['tasks']:,} tasks; median of 3): {result['live_full_day']['median_ms']:,.0f} ms.",
        "",
        "EXPLAIN (a live day; a year's rollups; the year's distinct active users):",
        "",
        "| statement | table | type | key | rows | extra |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for entry in result["explain"]:
        for row in entry["plan"]:
            lines.append(
                f"| {entry['sql'][:60]}… | {row.get('table')} | {row.get('type')} | {row.get('key')} | "
                f"{row.get('rows')} | {row.get('Extra') or ''} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 dev.py bench-stats", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get(
            "WARDROBE_BENCH_MARIADB_SERVER", os.environ.get("WARDROBE_TEST_MARIADB_SERVER", DEFAULT_SERVER)
        ),
        help="MariaDB server URL without a database (WARDROBE_BENCH_MARIADB_SERVER, else the tests' server)",
    )
    parser.add_argument(
        "--database", default="wardrobe_bench_stats", help="dropped and re-created (wardrobe_bench_stats)"
    )
    parser.add_argument("--tasks", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=365, help="the history's length, ending now (365)")
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500_000, help="tasks per INSERT … SELECT (500,000)")
    parser.add_argument("--repeats", type=int, default=5, help="calls per range after the first (5)")
    parser.add_argument("--skip-fill", action="store_true", help="measure the database as a previous run left it")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="for the run, set the server's buffer pool (--buffer-pool-mb), a 1 GiB redo log and "
        "flush_log_at_trx_commit=2; restored at the end. Global: not on a shared server",
    )
    parser.add_argument("--buffer-pool-mb", type=int, default=3072)
    parser.add_argument("--keep-buffer-pool", action="store_true", help="with --tune: leave the buffer pool as set")
    parser.add_argument("--output", type=Path, default=Path("bench/results/stats.md"))
    args = parser.parse_args()
    if args.database.startswith("wardrobe_test"):
        parser.error("the bench never touches the test database")
    started = time.perf_counter()
    result = asyncio.run(measure(args))
    result["run_s"] = time.perf_counter() - started
    say(f"whole run {result['run_s']:.0f} s")
    return write_report(args.output, render(result, args), result)


if __name__ == "__main__":
    sys.exit(main())
