"""Where a queued task stands in the queue: how many queued tasks were created before it.

A ``COUNT`` of the queued tasks with a smaller id costs the database a range scan as long as the
queue ahead, on every creation and on every poll of a queued task: under a backlog the busiest
reads get the dearest. Instead each process keeps the sorted ids of the queued tasks, read in one
query at most once a second, and answers by bisection: O(log n) per read, and one O(n) read per
second per process whatever the request rate. Tasks newer than the snapshot (a task being created
is one) are counted in the database over the ids past the snapshot's end only, i.e. over what
was queued in the last second, not over the whole queue. A position is therefore as of at most a
second ago: a task started in that second may still count as ahead.
"""

from __future__ import annotations

import asyncio
import bisect
import time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import Task, TaskStatus

REFRESH_SECONDS = 1.0
SNAPSHOT_LIMIT = 100_000


class QueuePositions:
    def __init__(self, refresh_seconds: float = REFRESH_SECONDS, limit: int = SNAPSHOT_LIMIT) -> None:
        self.refresh_seconds = refresh_seconds
        self.limit = limit
        self._ids: list[int] = []
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def position(self, session: AsyncSession, task: Task) -> int | None:
        """Queued tasks ahead of ``task``; None once it is no longer queued."""
        if task.status != TaskStatus.QUEUED.value:
            return None
        if time.monotonic() - self._read_at >= self.refresh_seconds:
            await self._refresh(session)
        ids = self._ids
        if ids and task.id <= ids[-1]:
            return bisect.bisect_left(ids, task.id)
        newer = select(func.count()).select_from(Task).where(Task.status == TaskStatus.QUEUED.value, Task.id < task.id)
        if ids:
            newer = newer.where(Task.id > ids[-1])
        return len(ids) + int(await session.scalar(newer) or 0)

    async def _refresh(self, session: AsyncSession) -> None:
        async with self._lock:
            if time.monotonic() - self._read_at < self.refresh_seconds:
                return  # another request refreshed it while this one waited
            rows = await session.scalars(
                select(Task.id).where(Task.status == TaskStatus.QUEUED.value).order_by(Task.id).limit(self.limit)
            )
            self._ids = list(rows)
            self._read_at = time.monotonic()
