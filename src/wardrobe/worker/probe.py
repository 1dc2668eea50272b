"""The periodic probe: gauges that need a query, read every 15 s, never during a scrape.

A scrape must stay cheap and must not touch the database (Prometheus scrapes every process, and a
scrape that waits on a sick database would hide the sickness behind timeouts), so what needs a
query — the task stream's depth, pending messages and oldest age, the outbox backlog, whether each
dependency answers, free disk — is read here and kept in gauges that the scrape only renders.
``wardrobe worker`` and ``wardrobe scheduler`` run it; in embedded mode the API process does.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import (
    DEPENDENCY_UP,
    DISK_FREE_RATIO,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    QUEUE_PENDING,
)
from wardrobe.models import OutboxMessage
from wardrobe.models.base import utcnow
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.settings import Settings

log = get_logger("wardrobe.probe")
PROBE_SECONDS = 15.0
CHECK_TIMEOUT = 5.0  # one dependency's answer; the probe never hangs on a sick one
QUEUE = "tasks"  # the queue label: the task stream (worker/runtime.py names it)
DEPTH_COUNT_CAP = 10_000
STORAGE_PROBE_KEY = "health/probe"  # a key that never exists: a HEAD of it is a round trip


class ProbeParts(Protocol):
    """The parts of a process the probe reads (a process's ``Infra`` record has them)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> AsyncEngine: ...
    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def redis(self) -> Redis | None: ...
    @property
    def storage(self) -> ObjectStorage: ...


def stream_names(settings: Settings) -> tuple[str, str]:
    """The task stream and its consumer group, as the runtime's broker names them."""
    return f"{settings.redis_key_prefix}:tasks", f"{settings.redis_key_prefix}:workers"


async def probe_once(parts: ProbeParts) -> None:
    """Read every probed gauge once; a failing part leaves its gauges as they were."""
    settings = parts.settings
    database = await _up("database", _select_one(parts.engine))
    if database:
        await _guarded("outbox", _read_outbox(parts.session_factory))
    if parts.redis is not None and await _up("redis", parts.redis.ping()):
        await _guarded("queue", _read_queue(parts.redis, *stream_names(settings)))
    await _up("storage", parts.storage.head(STORAGE_PROBE_KEY))
    paths = [settings.var_dir]
    if settings.storage_backend == "local":
        paths.append(settings.storage_local_root)
    for path in paths:
        _read_disk(path)


async def run_probe(parts: ProbeParts, seconds: float = PROBE_SECONDS) -> None:
    """Probe now and every ``seconds``, until cancelled."""
    while True:
        try:
            await probe_once(parts)
        except Exception:
            log.exception("metrics_probe_crashed")  # the next round tries again
        await asyncio.sleep(seconds)


async def _up(dependency: str, check: Awaitable[Any]) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await check
    except Exception as exc:
        log.warning("dependency_probe_failed", dependency=dependency, error_type=type(exc).__name__)
        DEPENDENCY_UP.labels(dependency).set(0)
        return False
    DEPENDENCY_UP.labels(dependency).set(1)
    return True


async def _guarded(what: str, read: Awaitable[None]) -> None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await read
    except Exception as exc:
        log.warning("metrics_probe_failed", part=what, error_type=type(exc).__name__)


async def _select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _read_outbox(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        row = (
            await session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.published_at.is_(None))
            )
        ).one()
    count, oldest = int(row[0] or 0), row[1]
    OUTBOX_BACKLOG.set(count)
    OUTBOX_OLDEST_AGE.set(_age(oldest) if oldest is not None else 0.0)


def _age(value: datetime | str) -> float:
    if isinstance(value, str):  # SQLite hands an aggregate's datetime back as text
        value = datetime.fromisoformat(value).replace(tzinfo=utcnow().tzinfo)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=utcnow().tzinfo)
    return max(0.0, (utcnow() - value).total_seconds())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_age(entry_id: Any, now_ms: int) -> float:
    """A stream entry's age from its id (``<unix ms>-<seq>``)."""
    return max(0.0, (now_ms - int(_text(entry_id).split("-", 1)[0])) / 1000)


async def _read_queue(redis: Redis, stream: str, group: str) -> None:
    """Depth: messages the consumer group has not yet been given (its lag; the whole stream before
    the group exists). Pending: given to a worker and not acknowledged. Oldest age: of the oldest of
    either (acknowledged messages stay in the stream, so its length alone says nothing)."""
    now_ms = int(time.time() * 1000)
    length = int(await redis.xlen(stream))
    groups = await redis.xinfo_groups(stream) if length else []
    info = next((g for g in groups if _text(g.get("name")) == group), None)
    if info is None:
        depth, pending, oldest = length, 0, None
        if length:
            first = await redis.xrange(stream, count=1)
            oldest = _id_age(first[0][0], now_ms) if first else None
    else:
        lag = info.get("lag")
        pending = int(info.get("pending") or 0)
        last = _text(info.get("last-delivered-id") or "0-0")
        waiting = await redis.xrange(stream, min=f"({last}", count=1)
        if lag is None:  # Redis before 7 (or a lag it cannot tell): count, up to a bound
            lag = len(await redis.xrange(stream, min=f"({last}", count=DEPTH_COUNT_CAP) or [])
        depth = int(lag)
        ages = [_id_age(waiting[0][0], now_ms)] if waiting else []
        if pending:
            summary = await redis.xpending(stream, group)
            if summary.get("min"):
                ages.append(_id_age(summary["min"], now_ms))
        oldest = max(ages) if ages else None
    QUEUE_DEPTH.labels(QUEUE).set(depth)
    QUEUE_PENDING.labels(QUEUE).set(pending)
    QUEUE_OLDEST_AGE.labels(QUEUE).set(oldest or 0.0)


def _read_disk(path: Path) -> None:
    # A directory not created yet (a fresh var dir) will be on its nearest existing parent's disk.
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        usage = shutil.disk_usage(existing)
    except OSError as exc:
        log.warning("disk_probe_failed", path=str(path), error_type=type(exc).__name__)
        return
    DISK_FREE_RATIO.labels(str(path)).set(usage.free / usage.total if usage.total else 0.0)
