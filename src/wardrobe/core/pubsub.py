"""A Redis pub/sub subscription kept alive for the life of a process (cache invalidations,
callback hints): resubscribes after a dropped connection and says so, because messages published
meanwhile were lost and the subscriber may need to resynchronise."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from wardrobe.core.logging import get_logger

log = get_logger("wardrobe.pubsub")
RESUBSCRIBE_SECONDS = 1.0


class Subscription:
    def __init__(
        self,
        redis: Redis,
        channel: str,
        on_message: Callable[[bytes | str], Awaitable[None]],
        *,
        on_subscribed: Callable[[], None] | None = None,
        name: str,
    ) -> None:
        self._redis = redis
        self.channel = channel
        self._on_message = on_message
        self._on_subscribed = on_subscribed  # each (re)subscription: messages in between were lost
        self._name = name
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Return once subscribed (or after 5 s, the listener retrying in the background)."""
        if self._task is not None:
            return
        subscribed = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._listen(subscribed), name=self._name)
        await asyncio.wait([subscribed, self._task], timeout=5, return_when=asyncio.FIRST_COMPLETED)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self, subscribed: asyncio.Future[None]) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    if self._on_subscribed is not None:
                        self._on_subscribed()
                    if not subscribed.done():
                        subscribed.set_result(None)
                    async for message in pubsub.listen():
                        await self._on_message(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("subscription_lost", channel=self.channel, error_type=type(exc).__name__)
                await asyncio.sleep(RESUBSCRIBE_SECONDS)
