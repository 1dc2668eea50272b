"""The outbox relay: publishes messages written by committed transactions.

A change and its message commit together (the ``outbox`` row); the relay then publishes and marks
the row. A crash between the two only means the message goes out again later, which consumers
tolerate (claiming a task is exclusive). Rows are claimed with SKIP LOCKED, so several relays in
several processes share the work without publishing one row twice at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core import telemetry, tracing
from wardrobe.core.db import unit_of_work
from wardrobe.core.logging import get_logger
from wardrobe.core.outbox import relay_started, relay_stopped
from wardrobe.models import OutboxMessage
from wardrobe.models.base import utcnow

log = get_logger("wardrobe.outbox")
# Publishes one row: its topic, its payload and when it was written (in the transaction that
# committed it: what a push's lag is measured from).
Publisher = Callable[[str, dict[str, Any], datetime], Awaitable[None]]


class OutboxRelay:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        publish: Publisher,
        *,
        topics: tuple[str, ...],
        batch_size: int = 100,
    ) -> None:
        self._sessions = session_factory
        # The topics this relay can publish; others' rows are left for a relay that can.
        self.topics = topics
        self._publish = publish
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopped = False
        self.published = 0

    def stop(self) -> None:
        """No more passes after the current one; rows left unpublished stay for another relay."""
        self._stopped = True
        self._wake.set()

    def kick(self) -> None:
        """Ask for a relay pass now (called after a commit that wrote messages)."""
        self._wake.set()

    async def relay_once(self) -> int:
        async with unit_of_work(self._sessions) as session:
            rows = list(
                await session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None), OutboxMessage.topic.in_(self.topics))
                    .order_by(OutboxMessage.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            for row in rows:
                # Published under the trace of the work that wrote it (a request, a task's run).
                with tracing.bound(row.trace_id), telemetry.resumed(row.trace_parent):
                    await self._publish(row.topic, dict(row.payload), row.created_at)
            if rows:
                # The batch is marked in one statement (not one per row): a failed publish above
                # rolls all of it back, so nothing is marked that did not go out.
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_([row.id for row in rows]))
                    .values(attempts=OutboxMessage.attempts + 1, published_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
        self.published += len(rows)
        return len(rows)

    async def run_forever(self, idle_seconds: float = 2.0) -> None:
        """Relay on every kick, and every ``idle_seconds`` anyway to catch anything missed."""
        relay_started(self)
        try:
            await self._relay_until_stopped(idle_seconds)
        finally:
            relay_stopped(self)

    async def _relay_until_stopped(self, idle_seconds: float) -> None:
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=idle_seconds)
            self._wake.clear()
            if self._stopped:
                return
            try:
                while await self.relay_once() == self._batch_size:
                    continue
            except Exception:
                log.exception("outbox_relay_failed")
