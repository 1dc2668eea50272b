"""Periodic work of the payments module (run by ``worker/scheduler.py``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache
from wardrobe.core.logging import get_logger
from wardrobe.core.outbox import Announcer
from wardrobe.modules.payments.gateway import Payments
from wardrobe.modules.payments.reconciliation import reconcile_once
from wardrobe.settings import Settings

log = get_logger("wardrobe.payments")


async def reconcile_payments(
    sessions: async_sessionmaker[AsyncSession],
    payments: Payments,
    *,
    settings: Settings,
    cache: Cache,
    announcer: Announcer,
) -> int:
    """Repair missed payment notifications, close expired orders, settle pending refunds."""
    if not payments.gateways:
        return 0
    report = await reconcile_once(sessions, payments, settings=settings, cache=cache, announcer=announcer)
    if report.discrepancies or report.errors:
        log.warning("payments_reconciled", **report.as_dict())
    return report.fulfilled + report.closed + report.refunds_settled
