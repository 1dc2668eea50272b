"""Per-provider concurrency slots shared by every worker on every machine (D5).

A slot is a lease: a member of a Redis sorted set scored by its expiry. Acquiring drops expired
members and adds ours only if fewer than ``limit`` remain — one Lua script, so it is atomic across
processes. A worker that dies never releases its slot; the slot comes back when its lease expires.
Embedded mode keeps the same semantics in process memory.

A provider with several accounts (``accounts.py``) keeps one set too, its members named
``account<US>holder``: one script counts each account's members, renews a holder's existing slot
(on the account it has), or else gives the new holder a slot on the candidate account with the
most room — so the choice and the count can never race.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Sequence
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

SEP = "\x1f"  # between account and holder in a member's name
# KEYS[1] = slot set; ARGV = now, expires_at, holder, then account, limit pairs in preference order
_ACQUIRE_ACCOUNT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local used = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local at = string.find(member, '\\31', 1, true)
  if at then
    local account = string.sub(member, 1, at - 1)
    if string.sub(member, at + 1) == ARGV[3] then
      redis.call('ZADD', KEYS[1], ARGV[2], member)
      return account
    end
    used[account] = (used[account] or 0) + 1
  end
end
local best, room = nil, 0
for i = 4, #ARGV, 2 do
  local free = tonumber(ARGV[i + 1]) - (used[ARGV[i]] or 0)
  if free > room then
    best, room = ARGV[i], free
  end
end
if not best then
  return false
end
redis.call('ZADD', KEYS[1], ARGV[2], best .. '\\31' .. ARGV[3])
local ttl = math.ceil((tonumber(ARGV[2]) - tonumber(ARGV[1])) * 1000) + 1000
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return best
"""


class SlotStore(Protocol):
    async def try_acquire(self, provider: str, holder: str, limit: int, lease_seconds: float) -> bool: ...

    async def release(self, provider: str, holder: str, account: str | None = None) -> None: ...

    async def in_use(self, provider: str) -> int: ...

    async def try_acquire_account(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> str | None:
        """A slot on one of ``accounts`` (name, limit): the holder's current one, or the one with
        the most room (earlier wins a tie); the account's name, or None when all are full."""
        ...

    async def in_use_by_account(self, provider: str) -> dict[str, int]: ...


class RedisSlots:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_ACQUIRE)
        self._account_script = redis.register_script(_ACQUIRE_ACCOUNT)

    def _key(self, provider: str) -> str:
        return f"{self._prefix}:slots:{provider}"

    async def try_acquire(self, provider: str, holder: str, limit: int, lease_seconds: float) -> bool:
        now = time.time()
        won = await self._script(keys=[self._key(provider)], args=[now, now + lease_seconds, limit, holder])
        return bool(won)

    async def release(self, provider: str, holder: str, account: str | None = None) -> None:
        await self._redis.zrem(self._key(provider), holder if account is None else f"{account}{SEP}{holder}")

    async def in_use(self, provider: str) -> int:
        key = self._key(provider)
        await self._redis.zremrangebyscore(key, "-inf", time.time())
        return int(await self._redis.zcard(key))

    async def try_acquire_account(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> str | None:
        now = time.time()
        pairs = [str(x) for name, limit in accounts for x in (name, limit)]
        won = await self._account_script(keys=[self._key(provider)], args=[now, now + lease_seconds, holder, *pairs])
        return None if won is None else (won.decode() if isinstance(won, bytes) else str(won))

    async def in_use_by_account(self, provider: str) -> dict[str, int]:
        key = self._key(provider)
        await self._redis.zremrangebyscore(key, "-inf", time.time())
        return _count_by_account(
            m.decode() if isinstance(m, bytes) else str(m) for m in await self._redis.zrange(key, 0, -1)
        )


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

    async def release(self, provider: str, holder: str, account: str | None = None) -> None:
        self._held.get(provider, {}).pop(holder if account is None else f"{account}{SEP}{holder}", None)

    async def in_use(self, provider: str) -> int:
        now = time.monotonic()
        return sum(1 for expires in self._held.get(provider, {}).values() if expires > now)

    async def try_acquire_account(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> str | None:
        now = time.monotonic()
        held = self._held.setdefault(provider, {})
        for other in [h for h, expires in held.items() if expires <= now]:
            del held[other]
        for member in held:
            account, sep, who = member.partition(SEP)
            if sep and who == holder:
                held[member] = now + lease_seconds
                return account
        used = _count_by_account(held)
        best, room = None, 0
        for name, limit in accounts:
            if limit - used.get(name, 0) > room:
                best, room = name, limit - used.get(name, 0)
        if best is not None:
            held[f"{best}{SEP}{holder}"] = now + lease_seconds
        return best

    async def in_use_by_account(self, provider: str) -> dict[str, int]:
        now = time.monotonic()
        return _count_by_account(m for m, expires in self._held.get(provider, {}).items() if expires > now)


def _count_by_account(members: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for member in members:
        account, sep, _ = member.partition(SEP)
        if sep:
            counts[account] = counts.get(account, 0) + 1
    return counts


async def wait_for_account_slot(
    store: SlotStore,
    provider: str,
    holder: str,
    accounts: Sequence[tuple[str, int]],
    lease_seconds: float,
    within: float,
) -> str | None:
    """``wait_for_slot`` over several accounts: the account granted, or None after ``within``."""
    deadline = time.monotonic() + within
    pause = 0.02
    while True:
        account = await store.try_acquire_account(provider, holder, accounts, lease_seconds)
        if account is not None:
            return account
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())) * random.uniform(0.5, 1.0))  # noqa: S311
        pause = min(0.25, pause * 2)


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
