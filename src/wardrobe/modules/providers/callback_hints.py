"""Wake a polling step when a callback for it arrives (found by ``bench-vendors``).

A step waiting on a vendor job polls every ``poll_interval_seconds``; the vendor's callback usually
comes first. The process that records the callback announces the step's reference here, and the
worker polling that step — in this process, or in any other through Redis pub/sub — polls at
once instead of finishing its sleep. A hint is only a hint: a lost one costs one poll interval,
never correctness (the poll still asks the vendor).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from redis.asyncio import Redis

from wardrobe.core.logging import get_logger
from wardrobe.core.pubsub import Subscription

log = get_logger("wardrobe.callbacks")


class CallbackHints:
    def __init__(self, redis: Redis | None, channel: str) -> None:
        self._redis = redis
        self.channel = channel
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._subscription: Subscription | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.received = 0  # hints from other processes that woke a step here

    @contextlib.contextmanager
    def watch(self, ref: str) -> Iterator[asyncio.Event]:
        """An event set whenever a callback for ``ref`` arrives, while the block runs."""
        event = asyncio.Event()
        self._waiting.setdefault(ref, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiting.get(ref)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiting[ref]

    def _wake(self, ref: str) -> bool:
        events = self._waiting.get(ref, ())
        for event in events:
            event.set()
        return bool(events)

    def announce(self, ref: str) -> None:
        """A callback for ``ref`` was recorded: wake its step here and in every other process."""
        if self._wake(ref) or self._redis is None:
            return  # polled in this process (embedded mode, or a worker that serves callbacks)
        task = asyncio.ensure_future(self._publish(self._redis, ref))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, redis: Redis, ref: str) -> None:
        try:
            await redis.publish(self.channel, ref)
        except Exception:
            log.warning("callback_hint_not_published", ref=ref)  # the step polls on its schedule

    async def start(self) -> None:
        """Listen for other processes' hints (processes that run tasks)."""
        if self._redis is not None and self._subscription is None:
            self._subscription = Subscription(self._redis, self.channel, self._received, name="callback-hints")
            await self._subscription.start()

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None
        if self._pending:
            await asyncio.wait(self._pending, timeout=2)

    async def _received(self, data: bytes | str) -> None:
        ref = data.decode() if isinstance(data, bytes) else str(data)
        if self._wake(ref):
            self.received += 1
