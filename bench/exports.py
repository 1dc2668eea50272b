"""CSV export of the quota ledger: peak memory while exporting N rows, streamed in batches against
read all at once.

Seeds a SQLite database (migrated as in production) with N ledger rows of a few hundred users,
spread over 30 days, then exports the whole range in child processes, one per way of exporting,
so that each starts from the same memory: the API's ``stream_csv`` with its default batch and with
a larger one, and the naive way (one query for every row, one CSV document in memory). Each child
reports the peak of Python's allocations (tracemalloc, in a run of its own) and the growth of its
peak resident set size (RSS) over what it held before exporting. The check: every way produces
the same bytes, and the streamed file holds exactly the seeded rows.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_and_software, say, wardrobe_source, write_report
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import create_engine, create_session_factory
from wardrobe.migrations import runner
from wardrobe.models import LedgerEntry, User
from wardrobe.models.base import utcnow
from wardrobe.modules.admin import exports, repository
from wardrobe.modules.admin.ranges import DayRange
from wardrobe.settings import Environment, Settings

FIRST_DAY = date(2026, 11, 1)
DAYS = 30
MODES = ("stream-1000", "stream-10000", "all-at-once")


def _settings(path: Path) -> Settings:
    return Settings(env=Environment.TEST, database_url=f"sqlite+aiosqlite:///{path}", log_json=True)


async def _seed(path: Path, rows: int, users: int) -> None:
    engine = create_engine(_settings(path))
    try:
        await runner.upgrade(engine)
        start = datetime.combine(FIRST_DAY, datetime.min.time(), UTC)
        step = timedelta(seconds=DAYS * 86400 / rows)
        async with engine.begin() as conn:
            await conn.execute(insert(User), [{"id": n, "invite_code": f"B{n:07d}"} for n in range(1, users + 1)])
            for first in range(0, rows, 20_000):
                batch = [
                    {
                        "user_id": 1 + n % users,
                        "kind": "confirm" if n % 3 else "grant",
                        "amount": -1 if n % 3 else 10,
                        "hold_delta": -1 if n % 3 else 0,
                        "balance_after": 100 + n % 50,
                        "held_after": n % 4,
                        "ref": f"task:bench{n:09d}",
                        "note": "=1+1 by an operator" if n % 997 == 0 else None,
                        "actor_id": None,
                        "created_at": start + step * n,
                    }
                    for n in range(first, min(rows, first + 20_000))
                ]
                await conn.execute(insert(LedgerEntry), batch)
    finally:
        await engine.dispose()


async def _export(sessions: async_sessionmaker[AsyncSession], mode: str, span: DayRange) -> tuple[str, int, int]:
    """(sha256, bytes, lines) of the exported file, produced the way ``mode`` says."""
    digest, size, lines = hashlib.sha256(), 0, 0
    if mode.startswith("stream-"):
        async for chunk in exports.stream_csv(sessions, "ledger", span, batch_rows=int(mode.split("-")[1])):
            digest.update(chunk)
            size, lines = size + len(chunk), lines + chunk.count(b"\n")
        return digest.hexdigest(), size, lines
    # The naive export: every row in one result, the whole document in one buffer.
    async with sessions() as session:
        stmt = select(*repository.LEDGER_COLUMNS).where(
            LedgerEntry.created_at >= span.since, LedgerEntry.created_at <= span.until
        )
        rows = (await session.execute(stmt.order_by(LedgerEntry.id))).all()
    buffer = io.StringIO()
    buffer.write(exports.BOM)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(exports.LEDGER_HEADER)
    writer.writerows(exports.EXPORTS["ledger"][2](row) for row in rows)
    document = buffer.getvalue().encode("utf-8")
    digest.update(document)
    return digest.hexdigest(), len(document), document.count(b"\n")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    """Start the peak resident set size (VmHWM) afresh from the current one (Linux 4.0 and later)."""
    Path("/proc/self/clear_refs").write_text("5")


async def _child(path: Path, mode: str, traced: bool) -> dict[str, Any]:
    engine = create_engine(_settings(path))
    sessions = create_session_factory(engine)
    span = DayRange(FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 1))
    try:
        async with sessions() as session:  # connect and warm up before the baseline is taken
            await repository.id_bounds(session, repository.LEDGER, span.since, span.since)
        _reset_peak_rss()
        before = _status_kib("VmRSS")
        if traced:
            tracemalloc.start()
        began = time.perf_counter()
        sha, size, lines = await _export(sessions, mode, span)
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1] if traced else None
        grown = _status_kib("VmHWM") - before
        return {"sha256": sha, "bytes": size, "lines": lines, "seconds": seconds, "traced_peak": peak, "rss_kib": grown}
    finally:
        await engine.dispose()


def _measure(path: Path, mode: str, traced: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--database", str(path)] + (["--traced"] if traced else [])
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _report(args: argparse.Namespace, runs: dict[str, dict[str, Any]]) -> int:
    shas = {run["traced"]["sha256"] for run in runs.values()} | {run["plain"]["sha256"] for run in runs.values()}
    lines_ok = all(run["plain"]["lines"] == args.rows + 1 for run in runs.values())
    passed = len(shas) == 1 and lines_ok
    machine, _ = machine_and_software(None, "")
    out = [
        f"# Ledger CSV export, {args.rows:,} rows on SQLite — {utcnow():%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `python3 dev.py bench-exports --rows {args.rows}`",
        f"- Machine: {machine}",
        f"- Software: Python {sys.version.split()[0]}, {wardrobe_source()}",
        f"- File: {runs['all-at-once']['plain']['bytes'] / 2**20:,.1f} MiB, {args.rows:,} rows and a header",
        "",
        "| way | peak Python allocations (tracemalloc) | peak RSS growth | seconds (untraced) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for mode, run in runs.items():
        out.append(
            f"| {mode} | {run['traced']['traced_peak'] / 2**20:,.1f} MiB | {run['plain']['rss_kib'] / 1024:,.1f} MiB | "
            f"{run['plain']['seconds']:.1f} |"
        )
    out += [
        "",
        f"Check: every way wrote the same bytes, and the file holds exactly the seeded rows: "
        f"**{'PASS' if passed else 'FAIL'}**.",
    ]
    return write_report(args.output, "\n".join(out) + "\n", {"rows": args.rows, "runs": runs}, passed=passed)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 dev.py bench-exports", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--output", type=Path, default=Path("bench/results/exports.md"))
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.database, args.child, args.traced))))
        return 0
    with tempfile.TemporaryDirectory(prefix="wardrobe-bench-exports-") as folder:
        path = Path(folder) / "wardrobe.db"
        say(f"seeding {args.rows:,} ledger rows of {args.users} users")
        began = time.perf_counter()
        asyncio.run(_seed(path, args.rows, args.users))
        say(f"seeded in {time.perf_counter() - began:.1f} s")
        runs: dict[str, dict[str, Any]] = {}
        for mode in MODES:
            runs[mode] = {"plain": _measure(path, mode, False), "traced": _measure(path, mode, True)}
            say(f"{mode}: {runs[mode]}")
    return _report(args, runs)


if __name__ == "__main__":
    sys.exit(main())
