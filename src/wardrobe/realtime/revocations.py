"""Revoked login sessions reach every process: sockets of a revoked session are dropped at once.

A revocation (logout, logout-all, a password or phone change, a ban, account deletion, a reused
refresh token) commits an outbox message (``tokens.TOPIC_SESSIONS_REVOKED``) with the revocation
itself. The first relay to take it publishes it here: on Redis pub/sub to every process, or to this
process's own listeners when embedded. Each API process's Socket.IO hub then disconnects the
matching sockets it holds. A process that misses a message (its Redis connection dropped) still
refuses the session at the socket's next ``subscribe``, and every socket ends with its access token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from wardrobe.core.logging import get_logger
from wardrobe.core.pubsub import Subscription

log = get_logger("wardrobe.realtime.revocations")


@dataclass(frozen=True, slots=True)
class Revoked:
    """Which sessions ended: one (``session_id``), or all of a user's but ``keep_session_id``."""

    user_id: int
    session_id: str | None = None
    keep_session_id: str | None = None

    def covers(self, session_id: str) -> bool:
        if self.session_id is not None:
            return session_id == self.session_id
        return session_id != self.keep_session_id

    @classmethod
    def of(cls, payload: dict[str, Any]) -> Revoked:
        return cls(
            user_id=int(payload["user_id"]),
            session_id=payload.get("session_id"),
            keep_session_id=payload.get("keep_session_id"),
        )


Listener = Callable[[Revoked], Awaitable[None]]


class RevocationBus:
    """Carries revocations between processes (Redis) or within one (embedded)."""

    def __init__(self, redis: Redis | None, key_prefix: str) -> None:
        self._redis = redis
        self.channel = f"{key_prefix}:sessions_revoked"
        self._listeners: list[Listener] = []
        self._subscription: Subscription | None = None

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        if self._redis is not None and self._listeners and self._subscription is None:
            self._subscription = Subscription(self._redis, self.channel, self._received, name="sessions-revoked")
            await self._subscription.start()

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None

    async def publish(self, payload: dict[str, Any]) -> None:
        """The outbox relay's publisher for revocations."""
        if self._redis is not None:
            await self._redis.publish(self.channel, orjson.dumps(payload))
        else:
            await self._deliver(Revoked.of(payload))

    async def _received(self, raw: bytes | str) -> None:
        try:
            revoked = Revoked.of(orjson.loads(raw))
        except (ValueError, KeyError, TypeError):
            log.warning("revocation_message_unreadable")
            return
        await self._deliver(revoked)

    async def _deliver(self, revoked: Revoked) -> None:
        for listener in self._listeners:
            try:
                await listener(revoked)
            except Exception:
                log.exception("revocation_listener_failed", user_id=revoked.user_id)
