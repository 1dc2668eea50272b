"""Cache-aside for hot, small, rarely edited data: the catalog, pipeline schemas, plans and
users' memberships.

Each process keeps the values in its own memory (no network hop on a hit) and every edit is
broadcast on a Redis channel, so all processes drop the old value right after the edit commits.

Written here rather than taken from cashews: cashews' shared caches put a Redis round trip on
every hit, and its client-side mode invalidates through Redis key tracking, which gives no event a
process (or a test) can observe. What we need fits in one small class:

- **TTL jitter** (avalanche): each value lives ``ttl × U(1 - jitter, 1 + jitter)``, so values
  loaded together do not all expire together.
- **Negative caching** (penetration): a loader's ``None`` is kept for ``negative_ttl``, so asking
  for a key that does not exist does not reach the database every time.
- **Single flight** (breakdown): concurrent misses of one key in a process share one load.
- **Invalidation across processes**: ``invalidate`` (call it after the edit commits, e.g. through
  ``core.db.after_commit``) drops the key here and publishes it; every other process drops it when
  the message arrives. A load that started before an invalidation is not stored (generation
  check), so a slow reader cannot put the old value back. If the subscription drops, everything
  is dropped when it comes back, because messages sent meanwhile were lost; TTLs bound the damage
  of any other miss.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import CACHE_INVALIDATIONS, CACHE_REQUESTS
from wardrobe.core.pubsub import Subscription

log = get_logger("wardrobe.cache")
T = TypeVar("T")
ALL = "*"  # an invalidation of every key of a namespace


@dataclass(frozen=True, slots=True)
class Policy:
    ttl: float
    negative_ttl: float = 10.0
    jitter: float = 0.1


@dataclass(slots=True)
class _Entry:
    value: Any
    expires_at: float


class _Missing:
    """What a loader's ``None`` is cached as."""


_MISSING = _Missing()


class Cache:
    def __init__(self, redis: Redis | None, key_prefix: str, policies: dict[str, Policy]) -> None:
        self._redis = redis
        self.channel = f"{key_prefix}:cache:invalidate"
        self._policies = policies
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._loads: dict[tuple[str, str], asyncio.Future[Any]] = {}
        # Bumped by every invalidation of a namespace: a load started under an older generation
        # may have read the old data, so its result is returned but not stored.
        self._generations: dict[str, int] = dict.fromkeys(policies, 0)
        self._subscription: Subscription | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Condition()
        self.received = 0  # invalidations received from other processes (tests wait on it)
        self._origin = uuid.uuid4().hex  # our own broadcasts come back to us: skip them

    async def get(self, namespace: str, key: str, load: Callable[[], Awaitable[T | None]]) -> T | None:
        """The cached value of ``namespace``/``key``, loading it with ``load`` on a miss."""
        slot = (namespace, key)
        entry = self._entries.get(slot)
        now = time.monotonic()
        if entry is not None and entry.expires_at > now:
            missing = entry.value is _MISSING
            CACHE_REQUESTS.labels(namespace, "negative_hit" if missing else "hit").inc()
            return None if missing else entry.value
        running = self._loads.get(slot)
        if running is not None:
            CACHE_REQUESTS.labels(namespace, "coalesced").inc()
            return await asyncio.shield(running)
        CACHE_REQUESTS.labels(namespace, "miss").inc()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loads[slot] = future
        generation = self._generations[namespace]
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: nobody may be waiting
            raise
        finally:
            self._loads.pop(slot, None)
        if self._generations[namespace] == generation:
            self._entries[slot] = _Entry(_MISSING if value is None else value, now + self._lifetime(namespace, value))
        future.set_result(value)
        return value

    def _lifetime(self, namespace: str, value: object) -> float:
        policy = self._policies[namespace]
        base = policy.negative_ttl if value is None else policy.ttl
        return base * random.uniform(1 - policy.jitter, 1 + policy.jitter)  # noqa: S311 - not security

    def invalidate(self, namespace: str, key: str = ALL) -> None:
        """Drop ``key`` (or the whole namespace) here and tell every other process."""
        self._drop(namespace, key)
        CACHE_INVALIDATIONS.labels(namespace, "local").inc()
        if self._redis is not None:
            message = orjson.dumps({"ns": namespace, "key": key, "origin": self._origin})
            task = asyncio.ensure_future(self._publish(self._redis, message))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _publish(self, redis: Redis, message: bytes) -> None:
        try:
            await redis.publish(self.channel, message)
        except Exception:
            # The edit is committed; other processes fall back to the TTL. Loud, not fatal.
            log.exception("cache_invalidation_not_published")

    def _drop(self, namespace: str, key: str) -> None:
        self._generations[namespace] = self._generations.get(namespace, 0) + 1
        if key == ALL:
            for slot in [s for s in self._entries if s[0] == namespace]:
                del self._entries[slot]
        else:
            self._entries.pop((namespace, key), None)

    def clear(self) -> None:
        for namespace in self._generations:
            self._generations[namespace] += 1
        self._entries.clear()

    async def wait_received(self, count: int, within: float = 10.0) -> None:
        """Wait until this process has applied ``count`` invalidations from other processes."""

        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.received >= count)

        await asyncio.wait_for(reached(), within)

    async def start(self) -> None:
        if self._redis is not None and self._subscription is None:
            # Messages sent while we were not listening are lost: start clean on every subscribe.
            self._subscription = Subscription(
                self._redis, self.channel, self._apply, on_subscribed=self.clear, name="cache-invalidations"
            )
            # Serve nothing from this cache before the subscription is live: an edit made in
            # between would be missed until the TTL.
            await self._subscription.start()

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None
        if self._pending:
            await asyncio.wait(self._pending, timeout=2)

    async def _apply(self, data: Any) -> None:
        try:
            body = orjson.loads(data)
            namespace, key = str(body["ns"]), str(body["key"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("cache_invalidation_malformed")
            return
        if body.get("origin") == self._origin:
            return
        self._drop(namespace, key)
        CACHE_INVALIDATIONS.labels(namespace, "remote").inc()
        async with self._changed:
            self.received += 1
            self._changed.notify_all()
