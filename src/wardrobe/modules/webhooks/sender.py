"""The loop that makes due attempts: woken when deliveries are recorded here, and otherwise every
``POLL_SECONDS`` for retries and for deliveries another process recorded."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.logging import get_logger
from wardrobe.modules.providers.fetch import SafeFetcher
from wardrobe.modules.webhooks.deliveries import attempt_due, fan_out, seconds_to_next
from wardrobe.settings import Settings

log = get_logger("wardrobe.webhooks")
POLL_SECONDS = 2.0


class WebhookSender:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._fetcher = SafeFetcher(allow_private=settings.webhook_allow_private, user_agent="wardrobe-webhooks/1")
        self._wake = asyncio.Event()
        self._stopping = False
        self.attempted = 0  # attempts made by this process (tests, metrics)

    def stop(self) -> None:
        """Called before the loop is cancelled: an error from a query cut short is then the stop's."""
        self._stopping = True
        self._wake.set()

    async def publish(self, payload: dict[str, Any]) -> None:
        """The outbox publisher of ``TOPIC_WEBHOOK``: record the deliveries, then wake the loop."""
        if await fan_out(self._sessions, self._settings, payload):
            self._wake.set()

    def kick(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        done = await attempt_due(self._sessions, self._fetcher, self._settings)
        self.attempted += done
        return done

    async def run_forever(self) -> None:
        while not self._stopping:
            try:
                busy = await self.run_once()
            except Exception:
                # A stop landing in a query surfaces as the driver's error (asyncmy: a
                # NotImplementedError from its cancelled read): the stop's, said by nobody.
                if self._stopping or _cancelling():
                    return
                # The database is away: the deliveries wait in their table; try again soon.
                log.warning("webhook_attempts_failed", exc_info=True)
                busy = 0
            if busy:
                continue  # there may be more due at once
            self._wake.clear()
            try:
                # A retry due sooner than the next poll (short waits) is not left for the poll.
                soonest = await seconds_to_next(self._sessions)
            except Exception:
                if self._stopping or _cancelling():
                    return
                soonest = None
            wait = POLL_SECONDS if soonest is None else min(POLL_SECONDS, soonest)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
