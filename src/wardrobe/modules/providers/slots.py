"""Per-provider concurrency slots shared by every worker on every machine (D5).

A slot is a lease: a member of a Redis sorted set scored by its expiry. Acquiring drops expired
members and adds ours only if fewer than ``limit`` remain — one Lua script, so it is atomic across
processes. A worker that dies never releases its slot; the slot comes back when its lease expires.
Embedded mode keeps the same semantics in process memory.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Protocol

from redis.asyncio import Redis

# KEYS[1] = slot set; ARGV = now, expires_at, limit, holder
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(ARGV[2]) - tonumber(ARGV[1])) * 1000) + 1000)
  return 1
end
return 0
"""


class SlotStore(Protocol):
    async def try_acquire(self, provider: str, holder: str, limit: int, lease_seconds: float) -> bool: ...

    async def release(self, provider: str, holder: str) -> None: ...

    async def in_use(self, provider: str) -> int: ...


class RedisSlots:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_ACQUIRE)

    def _key(self, provider: str) -> str:
        return f"{self._prefix}:slots:{provider}"

    async def try_acquire(self, provider: str, holder: str, limit: int, lease_seconds: float) -> bool:
        now = time.time()
        won = await self._script(keys=[self._key(provider)], args=[now, now + lease_seconds, limit, holder])
        return bool(won)

    async def release(self, provider: str, holder: str) -> None:
        await self._redis.zrem(self._key(provider), holder)

    async def in_use(self, provider: str) -> int:
        key = self._key(provider)
        await self._redis.zremrangebyscore(key, "-inf", time.time())
        return int(await self._redis.zcard(key))


class MemorySlots:
    def __init__(self) -> None:
        self._held: dict[str, dict[str, float]] = {}

    async def try_acquire(self, provider: str, holder: str, limit: int, lease_seconds: float) -> bool:
        now = time.monotonic()
        held = self._held.setdefault(provider, {})
        for other in [h for h, expires in held.items() if expires <= now]:
            del held[other]
        if holder in held or len(held) < limit:
            held[holder] = now + lease_seconds
            return True
        return False

    async def release(self, provider: str, holder: str) -> None:
        self._held.get(provider, {}).pop(holder, None)

    async def in_use(self, provider: str) -> int:
        now = time.monotonic()
        return sum(1 for expires in self._held.get(provider, {}).values() if expires > now)


async def wait_for_slot(
    store: SlotStore, provider: str, holder: str, limit: int, lease_seconds: float, within: float
) -> bool:
    """Try until a slot is free or ``within`` seconds pass. Polls with jittered back-off: a
    waiting step costs one small Redis call every 20-250 ms, and waiters do not wake in lockstep."""
    deadline = time.monotonic() + within
    pause = 0.02
    while True:
        if await store.try_acquire(provider, holder, limit, lease_seconds):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())) * random.uniform(0.5, 1.0))  # noqa: S311
        pause = min(0.25, pause * 2)
