"""Which ``wardrobe scheduler`` runs the jobs: the one holding a lock in Redis.

redis-py's own ``Lock`` is the lock: ``SET key token NX PX lease`` to take it, a Lua
compare-and-extend to renew it, a Lua compare-and-delete to release it. An instance renews every
third of the lease; a standby tries to take it as often. A leader that dies without releasing
(SIGKILL, lost host) leaves a key that expires at most one lease after its last renewal, so a
standby leads again within 4/3 of a lease. A leader that cannot renew (the key expired or was taken,
Redis unreachable) stops leading at once, and also once a lease has passed since its last renewal
whatever Redis says, so two instances never both believe they lead for longer than a renewal takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from wardrobe.core.logging import get_logger

log = get_logger("wardrobe.scheduler")


class Leadership:
    def __init__(self, redis: Redis, key: str, lease: float) -> None:
        self.lease = lease
        # Not thread-local: the token is this instance's, whichever task renews it.
        self._lock = Lock(redis, key, timeout=lease, blocking=False, thread_local=False)
        self._held = False
        self._renewed_at = 0.0
        self._tried = False

    @property
    def leading(self) -> bool:
        """Holds the lock, renewed less than a lease ago by this process's clock."""
        return self._held and time.monotonic() - self._renewed_at < self.lease

    async def hold(self) -> bool:
        """Take the lock, or renew it while held; whether this instance leads now."""
        started = time.monotonic()
        was = self._held
        try:
            # A Redis that hangs must not hold the renewal past the lease.
            async with asyncio.timeout(self.lease / 3):
                if self._held:
                    await self._lock.extend(self.lease, replace_ttl=True)
                else:
                    self._held = bool(await self._lock.acquire(blocking=False))
        except LockError:  # expired, or another instance holds it now
            self._held = False
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("scheduler_lock_unreachable", error=type(exc).__name__)
            self._held = False
        if self._held:
            # From before the call: the lease in Redis started no earlier than this.
            self._renewed_at = started
        if self._held != was or not self._tried:
            log.info("scheduler_leader" if self._held else "scheduler_standby")
        self._tried = True
        return self._held

    async def release(self) -> None:
        """Let a standby take over at once (on a clean shutdown); a lock already lost is left."""
        if not self._held:
            return
        self._held = False
        with contextlib.suppress(LockError, RedisError, OSError):
            await self._lock.release()
        log.info("scheduler_released")
