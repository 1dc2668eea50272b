"""Orphan cleanup over a seeded store: objects and bytes reclaimed, delete calls, time.

Seeds N objects under uploads/ and results/ of many users (sizes 20-200 KiB), a share of them
referenced, then runs the same ``collect_garbage`` the scheduler and ``wardrobe storage gc`` run:
once as a dry run, once for real, and checks that exactly the unreferenced ones went. On ``s3`` the
store is a local moto server (objects seeded into it directly; listing and deleting go over HTTP
as against COS); on ``local`` it is a folder. References come from a set here (the database read is
per user and measured by the tests, not this bench).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_and_software, say, wardrobe_source, write_report

from wardrobe.models.base import utcnow
from wardrobe.modules.storage import gc
from wardrobe.modules.storage.backend import LocalObjectStorage, ObjectStorage

BUCKET = "imgs-1250000000"


def _keys(count: int, users: int, rng: random.Random) -> list[tuple[str, int]]:
    out = []
    for n in range(count):
        area = "uploads" if n % 3 else "results"
        out.append((f"{area}/{1 + n % users}/2026/{1 + n % 12:02d}/o{n:06d}.png", rng.randint(20, 200) * 1024))
    return out


async def _seed_local(root: Path, objects: list[tuple[str, int]]) -> LocalObjectStorage:
    storage = LocalObjectStorage(root, "", b"bench-key-" * 4)
    for key, size in objects:
        path = storage._data_path(key)  # written directly: the bench measures the sweep, not puts
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
    return storage


def _seed_s3(objects: list[tuple[str, int]]) -> tuple[Any, ObjectStorage]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    from wardrobe.modules.storage.s3 import S3Credentials, S3ObjectStorage

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(BUCKET, "ap-guangzhou")
    for key, size in objects:
        backend.put_object(BUCKET, key, b"\0" * size)
    storage = S3ObjectStorage(
        bucket=BUCKET,
        region="ap-guangzhou",
        credentials=S3Credentials("bench", "bench-secret"),
        endpoint_url=f"http://{host}:{port}",
        addressing_style="path",
    )
    return server, storage


async def _measure(args: argparse.Namespace, storage: ObjectStorage, objects: list[tuple[str, int]]) -> dict[str, Any]:
    rng = random.Random(7)
    referenced = {key for key, _ in objects if rng.random() < args.referenced}
    by_user: dict[int, set[str]] = {}
    for key in referenced:
        by_user.setdefault(int(key.split("/")[1]), set()).add(key)

    async def references_of(user_id: int) -> set[str]:
        return by_user.get(user_id, set())

    later = utcnow() + timedelta(days=30)  # every object is past the grace period
    runs = {}
    for name, dry in (("dry run", True), ("gc", False)):
        started = time.perf_counter()
        report = await gc.collect_garbage(storage, references_of, grace=timedelta(days=7), dry_run=dry, now=later)
        runs[name] = {**report.as_dict(), "seconds": time.perf_counter() - started}
        say(f"{name}: {report.as_dict()} in {runs[name]['seconds']:.1f} s")
    left = set()
    for prefix in gc.SWEPT:
        start_after = None
        while page := await storage.list(prefix, 1000, start_after=start_after):
            left.update(info.key for info in page)
            start_after = page[-1].key
    orphans = {key: size for key, size in objects if key not in referenced}
    return {
        "runs": runs,
        "objects": len(objects),
        "referenced": len(referenced),
        "orphan_bytes": sum(orphans.values()),
        "left_is_exactly_the_referenced": left == referenced,
    }


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    parser = argparse.ArgumentParser(prog="python3 dev.py bench-storage-gc", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "s3"], default="s3")
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--referenced", type=float, default=0.3, help="share of objects referenced (0.3)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/storage_gc.md"))
    args = parser.parse_args()
    objects = _keys(args.objects, args.users, random.Random(1))
    say(f"seeding {len(objects):,} objects ({sum(s for _, s in objects) / 2**20:,.0f} MiB) on {args.backend}")
    server = None
    with tempfile.TemporaryDirectory(prefix="wardrobe-bench-gc-") as folder:
        if args.backend == "s3":
            server, storage = _seed_s3(objects)
        else:
            storage = asyncio.run(_seed_local(Path(folder), objects))
        try:
            result = asyncio.run(_run(args, storage, objects))
        finally:
            if server is not None:
                server.stop()
    machine, _ = machine_and_software(None, "")
    software = f"Python {sys.version.split()[0]}, {wardrobe_source()}"
    gc_run, dry = result["runs"]["gc"], result["runs"]["dry run"]
    ok = result["left_is_exactly_the_referenced"] and gc_run["bytes_reclaimed"] == result["orphan_bytes"]
    lines = [
        f"# Orphan cleanup over a seeded store ({args.backend}) — {utcnow():%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `python3 dev.py bench-storage-gc --backend {args.backend} --objects {args.objects}`",
        f"- Machine: {machine}",
        f"- Software: {software}",
        f"- Seeded: {result['objects']:,} objects of {args.users} users, {result['referenced']:,} referenced",
        "",
        "| run | scanned | kept referenced | deleted | bytes reclaimed | delete calls | seconds | objects/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, run in (("dry run", dry), ("gc", gc_run)):
        lines.append(
            f"| {name} | {run['scanned']:,} | {run['kept_referenced']:,} | {run['deleted']:,} | "
            f"{run['bytes_reclaimed']:,} ({run['bytes_reclaimed'] / 2**20:,.1f} MiB) | {run['delete_calls']} | "
            f"{run['seconds']:.1f} | {run['scanned'] / run['seconds']:,.0f} |"
        )
    lines += [
        "",
        f"Check: what is left is exactly the referenced objects, and the bytes reclaimed are the orphans' "
        f"bytes: **{'PASS' if ok else 'FAIL'}**.",
    ]
    return write_report(args.output, "\n".join(lines) + "\n", result, passed=ok)


async def _run(args: argparse.Namespace, storage: ObjectStorage, objects: list[tuple[str, int]]) -> dict[str, Any]:
    try:
        return await _measure(args, storage, objects)
    finally:
        close = getattr(storage, "aclose", None)
        if close is not None:
            await close()


if __name__ == "__main__":
    sys.exit(main())
