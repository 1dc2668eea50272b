"""How many sockets a user holds at once, counted across every API process.

Each open socket takes a *seat* of its user. With Redis the seats are members of one sorted set
per user, scored by when they lapse: a process renews the seats of its sockets every
``RENEW_SECONDS`` and frees them on disconnect, so a process that dies loses its seats within
``LEASE_SECONDS`` instead of holding them forever. Taking a seat is one script (drop lapsed seats,
count, add), so racing connects on several processes never exceed the cap. Embedded, one process
counts in memory.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable

from redis.asyncio import Redis

LEASE_SECONDS = 60.0
RENEW_SECONDS = 20.0
RENEW_BATCH = 100

_TAKE = """
local now = tonumber(ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zscore', KEYS[1], ARGV[4]) then
    return 1
end
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('zadd', KEYS[1], ARGV[3], ARGV[4])
redis.call('expire', KEYS[1], math.ceil(tonumber(ARGV[3]) - now) + 1)
return 1
"""


class Seats(ABC):
    @abstractmethod
    async def take(self, user_id: int, sid: str, cap: int) -> bool:
        """Seat ``sid`` if ``user_id`` holds fewer than ``cap``; False when full."""

    @abstractmethod
    async def release(self, user_id: int, sid: str) -> None: ...

    @abstractmethod
    async def renew(self, held: Iterable[tuple[int, str]]) -> None:
        """Extend the seats this process still holds."""


class MemorySeats(Seats):
    def __init__(self) -> None:
        self._held: dict[int, set[str]] = {}

    async def take(self, user_id: int, sid: str, cap: int) -> bool:
        seats = self._held.setdefault(user_id, set())
        if sid in seats:
            return True
        if len(seats) >= cap:
            return False
        seats.add(sid)
        return True

    async def release(self, user_id: int, sid: str) -> None:
        seats = self._held.get(user_id)
        if seats is not None:
            seats.discard(sid)
            if not seats:
                del self._held[user_id]

    async def renew(self, held: Iterable[tuple[int, str]]) -> None:
        return None


class RedisSeats(Seats):
    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}:socket_seats"
        self._take = redis.register_script(_TAKE)

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}:{user_id}"

    async def take(self, user_id: int, sid: str, cap: int) -> bool:
        now = time.time()
        taken = await self._take(keys=[self._key(user_id)], args=[now, cap, now + LEASE_SECONDS, sid])
        return bool(int(taken))

    async def release(self, user_id: int, sid: str) -> None:
        await self._redis.zrem(self._key(user_id), sid)

    async def renew(self, held: Iterable[tuple[int, str]]) -> None:
        until = time.time() + LEASE_SECONDS
        by_user: dict[int, list[str]] = {}
        for user_id, sid in held:
            by_user.setdefault(user_id, []).append(sid)
        users = list(by_user.items())
        # In rounds of RENEW_BATCH users, the loop free between them: redis-py spends some 40 µs of
        # CPU on each queued command, and one pipeline for 1,000 sockets held the event loop for
        # about 90 ms every RENEW_SECONDS, which every push in flight waited out (bench/README.md).
        for start in range(0, len(users), RENEW_BATCH):
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, sids in users[start : start + RENEW_BATCH]:
                    # XX: a seat freed meanwhile (its socket closed) is not brought back.
                    pipe.zadd(self._key(user_id), dict.fromkeys(sids, until), xx=True)
                    pipe.expire(self._key(user_id), int(LEASE_SECONDS) + 1)
                await pipe.execute()
