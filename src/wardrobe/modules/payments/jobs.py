"""Periodic work of the payments module (run by ``worker/scheduler.py``)."""

from __future__ import annotations

from wardrobe.core.infra import Infra
from wardrobe.core.logging import get_logger
from wardrobe.modules.payments.service import payments_of, reconcile_once

log = get_logger("wardrobe.payments")


async def reconcile_payments(infra: Infra) -> int:
    """Repair missed payment notifications, close expired orders, settle pending refunds."""
    if not payments_of(infra).gateways:
        return 0
    report = await reconcile_once(infra)
    if report.discrepancies or report.errors:
        log.warning("payments_reconciled", **report.as_dict())
    return report.fulfilled + report.closed + report.refunds_settled
