"""Per-provider concurrency slots shared by every worker on every machine.

A slot is a lease: a member of a Redis sorted set scored by its expiry, named
``account<US>holder`` (the account is "" for a provider without accounts, ``accounts.py``). One Lua
script drops expired members, renews a holder's existing slot (on the account it has), or else
gives the holder a slot on the candidate account with the most room — so the choice and the count
can never race across processes. A worker that dies never releases its slot; the slot comes back
when its lease expires. Leases are short and renewed by their holder (``renew``), so that is soon;
the engine decides how long a slot may outlive its holder (``pipeline/held_slots.py``). A lease is
only ever lengthened by a renewal, never cut short, except by its holder's ``release``. Embedded mode
keeps the same semantics in process memory.

**Arrival order.** Slots go to waiters in the order they first asked, not to whichever polls first
after a slot frees (``bench-vendors`` saw one step wait 79 s behind later arrivals, enough to time
it out). Every waiter is queued by its first try; a slot is granted only to a waiter among the
first *free* of the queue. A waiter that stops asking (its worker died) leaves the queue after
``STALE_SECONDS``; one that gives up leaves it at once (``abandon``). The queue is per provider:
a waiter pinned to one full account (a resumed vendor job) may make others wait for that account
up to its lease, which is rare and bounded.
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from redis.asyncio import Redis

SEP = "\x1f"  # between account and holder in a member's name
NO_ACCOUNT = ""  # the account of a provider that has none
STALE_SECONDS = 5.0  # waiters ask again every 20-250 ms; one silent this long is gone
HEAD_PLACES = 2  # waiters this near the front ask every HEAD_PAUSE
HEAD_PAUSE = 0.02

# KEYS = slot set, queue (holder -> first ask), seen (holder -> last ask)
# ARGV = now, expires_at, holder, stale_before, then account, limit pairs in preference order
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local used = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local at = string.find(member, '\\31', 1, true)
  if at then
    local account = string.sub(member, 1, at - 1)
    if string.sub(member, at + 1) == ARGV[3] then
      redis.call('ZADD', KEYS[1], 'GT', ARGV[2], member)
      return account
    end
    used[account] = (used[account] or 0) + 1
  end
end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
end
redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], 600000)
redis.call('PEXPIRE', KEYS[3], 600000)
local best, room, free = nil, 0, 0
for i = 5, #ARGV, 2 do
  local left = tonumber(ARGV[i + 1]) - (used[ARGV[i]] or 0)
  if left > 0 then
    free = free + left
  end
  if left > room then
    best, room = ARGV[i], left
  end
end
local rank = redis.call('ZRANK', KEYS[2], ARGV[3])
if not best or rank >= free then
  return '#' .. rank
end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], best .. '\\31' .. ARGV[3])
local ttl = math.ceil((tonumber(ARGV[2]) - tonumber(ARGV[1])) * 1000) + 1000
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return best
"""

# KEYS = slot set; ARGV = now, expires_at, member, mode ("renew": never shorter; "until": exactly)
# Returns 1 if the member still held its slot (then it now expires at expires_at), else 0: a lapsed
# slot is never taken back, someone else may have it by now.
_RESET = """
local held = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not held or tonumber(held) <= tonumber(ARGV[1]) then
  return 0
end
if ARGV[4] == 'renew' then
  redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[3])
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
end
local ttl = math.ceil((tonumber(ARGV[2]) - tonumber(ARGV[1])) * 1000) + 1000
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"""


class SlotStore(Protocol):
    async def ask(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> tuple[str | None, int]:
        """A slot on one of ``accounts`` (name, limit): the holder's current one, or — if the
        holder's turn has come — the one with the most room (earlier wins a tie). Returns the
        account's name (None: all full, or others asked first) and the holder's place in the
        queue (0 when granted)."""
        ...

    async def try_acquire_account(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> str | None: ...

    async def abandon(self, provider: str, holder: str) -> None:
        """The holder stops waiting: out of the queue."""
        ...

    async def renew(self, provider: str, holder: str, account: str, lease_seconds: float) -> bool:
        """The holder's slot lasts at least ``lease_seconds`` from now (a longer lease is kept).
        False when the slot has already lapsed: it is not taken back."""
        ...

    async def release(self, provider: str, holder: str, account: str = NO_ACCOUNT, after: float = 0.0) -> None:
        """Free the holder's slot now, or in ``after`` seconds (exactly: a longer lease is cut)."""
        ...

    async def in_use_by_account(self, provider: str) -> dict[str, int]: ...

    async def try_acquire(self, provider: str, holder: str, limit: int, lease_seconds: float) -> bool:
        """A slot of a provider without accounts."""
        ...

    async def in_use(self, provider: str) -> int: ...


class _Slots(ABC):
    """What both stores derive from the account-aware primitive."""

    @abstractmethod
    async def ask(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> tuple[str | None, int]: ...

    async def try_acquire_account(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> str | None:
        return (await self.ask(provider, holder, accounts, lease_seconds))[0]

    @abstractmethod
    async def in_use_by_account(self, provider: str) -> dict[str, int]: ...

    async def try_acquire(self, provider: str, holder: str, limit: int, lease_seconds: float) -> bool:
        return await self.try_acquire_account(provider, holder, [(NO_ACCOUNT, limit)], lease_seconds) is not None

    async def in_use(self, provider: str) -> int:
        return sum((await self.in_use_by_account(provider)).values())


class RedisSlots(_Slots):
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_ACQUIRE)
        self._reset = redis.register_script(_RESET)

    def _keys(self, provider: str) -> list[str]:
        return [
            f"{self._prefix}:slots:{provider}",
            f"{self._prefix}:slotq:{provider}",
            f"{self._prefix}:slotseen:{provider}",
        ]

    async def ask(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> tuple[str | None, int]:
        now = time.time()
        pairs = [str(x) for name, limit in accounts for x in (name, limit)]
        answer = await self._script(
            keys=self._keys(provider), args=[now, now + lease_seconds, holder, now - STALE_SECONDS, *pairs]
        )
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        if text.startswith("#"):  # not granted: our place in the queue
            return None, int(text[1:])
        return text, 0

    async def abandon(self, provider: str, holder: str) -> None:
        _, queue, seen = self._keys(provider)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(queue, holder)
            pipe.zrem(seen, holder)
            await pipe.execute()

    async def renew(self, provider: str, holder: str, account: str, lease_seconds: float) -> bool:
        return await self._set_expiry(provider, f"{account}{SEP}{holder}", lease_seconds, "renew")

    async def release(self, provider: str, holder: str, account: str = NO_ACCOUNT, after: float = 0.0) -> None:
        member = f"{account}{SEP}{holder}"
        if after > 0:
            await self._set_expiry(provider, member, after, "until")
        else:
            await self._redis.zrem(self._keys(provider)[0], member)

    async def _set_expiry(self, provider: str, member: str, seconds: float, mode: str) -> bool:
        now = time.time()
        answer = await self._reset(keys=self._keys(provider)[:1], args=[now, now + seconds, member, mode])
        return bool(int(answer))

    async def in_use_by_account(self, provider: str) -> dict[str, int]:
        key = self._keys(provider)[0]
        await self._redis.zremrangebyscore(key, "-inf", time.time())
        members = await self._redis.zrange(key, 0, -1)
        return _count_by_account(m.decode() if isinstance(m, bytes) else str(m) for m in members)


class MemorySlots(_Slots):
    def __init__(self) -> None:
        self._held: dict[str, dict[str, float]] = {}  # provider -> member -> lease expiry
        self._queue: dict[str, dict[str, list[float]]] = {}  # provider -> holder -> [first, last ask]

    async def ask(
        self, provider: str, holder: str, accounts: Sequence[tuple[str, int]], lease_seconds: float
    ) -> tuple[str | None, int]:
        now = time.monotonic()
        held = self._held.setdefault(provider, {})
        for other in [h for h, expires in held.items() if expires <= now]:
            del held[other]
        for member in held:
            account, _, who = member.partition(SEP)
            if who == holder:
                held[member] = max(held[member], now + lease_seconds)
                return account, 0
        queue = self._queue.setdefault(provider, {})
        for gone in [h for h, (_, last) in queue.items() if last < now - STALE_SECONDS]:
            del queue[gone]
        queue.setdefault(holder, [now, now])[1] = now
        used = _count_by_account(held)
        rooms = [(name, limit - used.get(name, 0)) for name, limit in accounts]
        free = sum(max(0, room) for _, room in rooms)
        best, room = None, 0
        for name, left in rooms:
            if left > room:
                best, room = name, left
        ahead = sum(1 for first, _ in queue.values() if first < queue[holder][0])
        if best is None or ahead >= free:
            return None, ahead
        del queue[holder]
        held[f"{best}{SEP}{holder}"] = now + lease_seconds
        return best, 0

    async def abandon(self, provider: str, holder: str) -> None:
        self._queue.get(provider, {}).pop(holder, None)

    async def renew(self, provider: str, holder: str, account: str, lease_seconds: float) -> bool:
        return self._set_expiry(provider, f"{account}{SEP}{holder}", lease_seconds, keep_longer=True)

    async def release(self, provider: str, holder: str, account: str = NO_ACCOUNT, after: float = 0.0) -> None:
        member = f"{account}{SEP}{holder}"
        if after > 0:
            self._set_expiry(provider, member, after, keep_longer=False)
        else:
            self._held.get(provider, {}).pop(member, None)

    def _set_expiry(self, provider: str, member: str, seconds: float, *, keep_longer: bool) -> bool:
        now = time.monotonic()
        held = self._held.get(provider, {})
        expires = held.get(member)
        if expires is None or expires <= now:  # lapsed: someone else may have the slot by now
            return False
        held[member] = max(expires, now + seconds) if keep_longer else now + seconds
        return True

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
    """Ask until a slot is granted or ``within`` seconds pass: the account granted, or None."""

    async def ask() -> tuple[str | None, int]:
        return await store.ask(provider, holder, accounts, lease_seconds)

    return await _ask_until(ask, store, provider, holder, within)


async def wait_for_slot(
    store: SlotStore, provider: str, holder: str, limit: int, lease_seconds: float, within: float
) -> bool:
    """``wait_for_account_slot`` for a provider without accounts."""
    granted = await wait_for_account_slot(store, provider, holder, [(NO_ACCOUNT, limit)], lease_seconds, within)
    return granted is not None


async def _ask_until(
    ask: Callable[[], Awaitable[tuple[str | None, int]]], store: SlotStore, provider: str, holder: str, within: float
) -> str | None:
    """The head of the queue asks every 20 ms, so a freed slot is not left idle (it is theirs to
    take); the others back off to 250 ms with jitter, so a long queue costs Redis little and does
    not wake in lockstep."""
    deadline = time.monotonic() + within
    pause = 0.02
    granted: str | None = None
    try:
        while True:
            granted, place = await ask()
            if granted is not None or time.monotonic() >= deadline:
                return granted
            pause = HEAD_PAUSE if place < HEAD_PLACES else min(0.25, pause * 2)
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())) * random.uniform(0.5, 1.0))  # noqa: S311
    finally:
        if granted is None:  # gave up, or the step was interrupted: let the next waiter go
            await asyncio.shield(store.abandon(provider, holder))
