"""Rate limits on the ``limits`` library: moving windows, exact across processes.

In production the windows live in Redis, where each ``hit`` is one atomic Lua script, so two API
processes sharing Redis count as one. In embedded mode they live in this process's memory.

``hit_all`` (the edge limits, on every request) is our own script over the library's data layout:
see ``_HIT_ALL``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerSecond,
    parse_many,
)
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from wardrobe.core.errors import RateLimited

# The edge windows of a request (per address, per user, per endpoint class) in one round trip.
# ``limits`` consumes one window per Redis command; at two or three windows on every request that
# was ~0.6 ms of CPU per request, a quarter of the task list's (bench/README.md), and the windows
# were consumed one by one (a refusal by the last left the first ones charged). This script checks
# every window, then consumes all of them or none, on exactly the keys and list layout of the
# library's moving window (newest timestamp first, trimmed to the limit, expiring with the window),
# so ``test``/``clear``/window stats of ``limits`` read the same windows. The keys must live on one
# Redis node (no Cluster hash slots here). Returns {0, 0} or {index of the full window, the time its
# oldest entry leaves} (as a string: Lua numbers would be truncated to integers).
_HIT_ALL = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local expiry = tonumber(ARGV[2 * i + 1])
    local entry = redis.call('lindex', key, limit - 1)
    if entry and tonumber(entry) >= now - expiry then
        return {i, tostring(tonumber(entry) + expiry)}
    end
end
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    redis.call('lpush', key, ARGV[1])
    redis.call('ltrim', key, 0, limit - 1)
    redis.call('expire', key, tonumber(ARGV[2 * i + 1]))
end
return {0, '0'}
"""

# Windows to consume together: (the items, the identifiers they are counted under).
Windows = Sequence[tuple[Sequence[RateLimitItem], tuple[str, ...]]]


def per_seconds(amount: int, seconds: int) -> RateLimitItem:
    return RateLimitItemPerSecond(amount, seconds)


def per_hour(amount: int) -> RateLimitItem:
    return RateLimitItemPerHour(amount)


def per_day(amount: int) -> RateLimitItem:
    return RateLimitItemPerDay(amount)


def parse_limits(spec: str) -> list[RateLimitItem]:
    """``"5/minute;10/hour"`` → items (the limits library's own notation)."""
    return list(parse_many(spec))


# What clients may send as a rate policy (a feature's, a vendor account's): windows like
# `10/minute` or `600/5 minutes`, `;`-separated, or empty for none. A strict subset of the limits
# notation (no "per", no other separators, no zero amounts), written as one pattern so that the
# contract states it exactly; parse_policy takes precisely the strings that match.
_POLICY_WINDOW = "[1-9][0-9]{0,8}/(?:[1-9][0-9]{0,3} ?)?(?:second|minute|hour|day|month|year)s?"
POLICY_PATTERN = f"^(?:{_POLICY_WINDOW}(?:;{_POLICY_WINDOW})*)?$"
_POLICY = re.compile(POLICY_PATTERN)


def parse_policy(spec: str) -> list[RateLimitItem]:
    """A client's rate policy → items; ValueError unless it matches POLICY_PATTERN."""
    if not _POLICY.fullmatch(spec):
        raise ValueError("must read like '10/minute' or '10/minute;100/day'")
    return parse_limits(spec) if spec else []


class RateLimiter:
    """Named windows checked by ``hit`` (consume) or ``peek`` (look without consuming)."""

    def __init__(self, storage: Storage, redis: Redis | None = None, key_prefix: str = "") -> None:
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        # Redis only: hit_all's script, on the storage's keys (its prefix, then ":", then the key).
        self._hit_all = redis.register_script(_HIT_ALL) if redis is not None else None
        self._key_prefix = key_prefix

    @classmethod
    def for_redis(cls, redis: Redis, key_prefix: str) -> RateLimiter:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{key_prefix}:rl",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        return cls(storage, redis, f"{key_prefix}:rl")

    @classmethod
    def in_memory(cls) -> RateLimiter:
        return cls(MemoryStorage())

    async def hit(self, items: Sequence[RateLimitItem], *identifiers: str) -> None:
        """Consume one unit from every window in order; raise ``RateLimited`` at the first full one.

        Each window is consumed atomically, so N processes racing for the last unit of a window
        let exactly one through.
        """
        for item in items:
            if not await self._strategy.hit(item, *identifiers):
                raise RateLimited(await self.retry_after(item, *identifiers), detail=f"limit {item}")

    async def hit_all(self, windows: Windows) -> None:
        """Consume one unit from every window of ``windows``, or from none: raise ``RateLimited``
        for the first full one. On Redis one atomic script call; in memory (one process) each
        window is checked, then all are consumed."""
        pairs = [(item, ids) for items, ids in windows for item in items]
        if not pairs:
            return
        if self._hit_all is None:
            for items, ids in windows:
                await self.peek(items, *ids)
            for items, ids in windows:  # a window filled meanwhile by another request still refuses
                await self.hit(items, *ids)
            return
        keys = [f"{self._key_prefix}:{item.key_for(*ids)}" for item, ids in pairs]
        args: list[float | int] = [time.time()]
        for item, _ in pairs:
            args += [item.amount, item.get_expiry()]
        full, frees_at = await self._hit_all(keys=keys, args=args)
        if int(full):
            item = pairs[int(full) - 1][0]
            raise RateLimited(max(1, int(float(frees_at) - time.time()) + 1), detail=f"limit {item}")

    async def count(self, windows: Windows) -> None:
        """Take one unit from every window of ``windows`` that has room; a full one stays full.
        For counters that only record what happened (nothing is refused by them here)."""
        for items, ids in windows:
            for item in items:
                await self._strategy.hit(item, *ids)

    async def try_hit(self, items: Sequence[RateLimitItem], *identifiers: str) -> float:
        """Consume one unit from every window if all have room and return 0; otherwise return the
        seconds until the fullest window frees a unit (> 0). Windows are checked before any is
        consumed; a race lost between check and hit can only waste a unit, never exceed a limit."""
        full = [item for item in items if not await self._strategy.test(item, *identifiers)]
        if not full:
            full = [item for item in items if not await self._strategy.hit(item, *identifiers)]
        wait = 0.0
        for item in full:
            stats = await self._strategy.get_window_stats(item, *identifiers)
            wait = max(wait, stats.reset_time - time.time())
        return max(wait, 0.01) if full else 0.0

    async def peek(self, items: Sequence[RateLimitItem], *identifiers: str) -> None:
        """Raise ``RateLimited`` if any window is already full, without consuming."""
        for item in items:
            if not await self._strategy.test(item, *identifiers):
                raise RateLimited(await self.retry_after(item, *identifiers), detail=f"limit {item}")

    async def retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self._strategy.get_window_stats(item, *identifiers)
        return max(1, int(stats.reset_time - time.time()) + 1)

    async def clear(self, items: Sequence[RateLimitItem], *identifiers: str) -> None:
        for item in items:
            await self._strategy.clear(item, *identifiers)

    async def check_storage(self) -> bool:
        return bool(await self._storage.check())
