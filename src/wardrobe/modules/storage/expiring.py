"""Small values that expire, shared by every process when Redis is configured (else kept in this
process, which is then the only one: embedded mode). Upload grants' size bounds and cached STS
credentials live here; losing them is harmless (a grant falls back to the global upload limit, a
user gets fresh credentials)."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis

# The in-memory map drops expired entries when it grows past this many.
_PRUNE_ABOVE = 10_000


class ExpiringValues:
    def __init__(self, redis: Redis | None, key_prefix: str, *, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}:storage:"
        self._clock = clock
        self._memory: dict[str, tuple[float, bytes]] = {}

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        ttl_ms = max(1, int(ttl_seconds * 1000))
        if self._redis is not None:
            await self._redis.set(self._prefix + key, value, px=ttl_ms)
            return
        now = self._clock()
        if len(self._memory) >= _PRUNE_ABOVE:
            self._memory = {k: v for k, v in self._memory.items() if v[0] > now}
        self._memory[key] = (now + ttl_ms / 1000, value)

    async def get(self, key: str) -> bytes | None:
        if self._redis is not None:
            value = await self._redis.get(self._prefix + key)
            if value is None:
                return None
            return value if isinstance(value, bytes) else str(value).encode()
        entry = self._memory.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._memory.pop(key, None)
            return None
        return entry[1]
