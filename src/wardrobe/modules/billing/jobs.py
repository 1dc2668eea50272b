"""Periodic work of the billing module (run by ``worker/scheduler.py``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache
from wardrobe.core.db import unit_of_work
from wardrobe.core.logging import get_logger
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import repository
from wardrobe.modules.billing.memberships import end_membership
from wardrobe.modules.billing.service import membership_changed

log = get_logger("wardrobe.billing")
BATCH = 500


async def expire_memberships(sessions: async_sessionmaker[AsyncSession], cache: Cache, *, batch: int = BATCH) -> int:
    """End every membership whose time has passed and expire its unspent quota (memberships.py),
    one account per transaction. Returns how many this run ended; a rerun, or another scheduler
    at the same time, ends none of them again."""
    ended = 0
    while True:
        async with unit_of_work(sessions) as session:
            due = await repository.lapsed_memberships(session, utcnow(), batch)
        done_here = 0
        for user_id, expires_at in due:
            try:
                async with unit_of_work(sessions) as session:
                    result = await end_membership(session, user_id, expires_at)
                    if result is not None:
                        membership_changed(session, cache, user_id)
            except Exception:
                # One account's failure (say a lock wait timeout) must not stop the others; the
                # next run tries it again.
                log.exception("membership_expiry_failed", user_id=user_id)
                continue
            if result is not None:
                done_here += 1
                log.info("membership_ended", user_id=user_id, sku=result.sku, expired=result.expired)
        ended += done_here
        # A full batch may have more behind it; a batch in which another process ended everything
        # (done_here == 0) is left to it.
        if len(due) < batch or done_here == 0:
            return ended
