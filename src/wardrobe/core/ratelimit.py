"""Rate limits (F3) on the ``limits`` library: moving windows, exact across processes.

In production the windows live in Redis, where each ``hit`` is one atomic Lua script, so two API
processes sharing Redis count as one. In embedded mode they live in this process's memory.
"""

from __future__ import annotations

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


def per_seconds(amount: int, seconds: int) -> RateLimitItem:
    return RateLimitItemPerSecond(amount, seconds)


def per_hour(amount: int) -> RateLimitItem:
    return RateLimitItemPerHour(amount)


def per_day(amount: int) -> RateLimitItem:
    return RateLimitItemPerDay(amount)


def parse_limits(spec: str) -> list[RateLimitItem]:
    """``"5/minute;10/hour"`` → items (the limits library's own notation)."""
    return list(parse_many(spec))


class RateLimiter:
    """Named windows checked by ``hit`` (consume) or ``peek`` (look without consuming)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)

    @classmethod
    def for_redis(cls, redis: Redis, key_prefix: str) -> RateLimiter:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{key_prefix}:rl",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        return cls(storage)

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
