"""The worker's own periodic work: the outbox table it relays from is kept small."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.models import OutboxMessage
from wardrobe.models.base import utcnow

# Published outbox messages are only kept for looking into a recent incident.
OUTBOX_RETENTION = timedelta(days=1)


async def purge_published_outbox(session_factory: async_sessionmaker[AsyncSession], *, batch: int) -> int:
    """Delete outbox messages published more than a day ago (every task writes two or three), in
    batches of ``batch`` so that no transaction holds many row locks; unpublished ones are never
    touched."""
    cutoff = utcnow() - OUTBOX_RETENTION
    purged = 0
    while True:
        async with unit_of_work(session_factory) as session:
            ids = list(
                await session.scalars(
                    select(OutboxMessage.id)
                    .where(OutboxMessage.published_at < cutoff)
                    .order_by(OutboxMessage.id)
                    .limit(batch)
                )
            )
            if ids:
                await session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        purged += len(ids)
        if len(ids) < batch:
            return purged
