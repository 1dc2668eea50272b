"""Reconciliation: the periodic repair of what the platforms' notifications missed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache
from wardrobe.core.db import unit_of_work
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import PAYMENT_EVENTS, RECONCILIATION_REPAIRS
from wardrobe.core.outbox import Announcer
from wardrobe.models import Order, PaymentChannel, Refund
from wardrobe.models.base import utcnow
from wardrobe.modules.payments import fulfilment, refunds, repository
from wardrobe.modules.payments.gateway import Payments, PlatformRefused, PlatformUnavailable, TradeState
from wardrobe.settings import Settings

log = get_logger("wardrobe.payments")


@dataclass
class ReconcileReport:
    fulfilled: int = 0
    closed: int = 0
    refunds_settled: int = 0
    discrepancies: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def reconcile_once(
    sessions: async_sessionmaker[AsyncSession],
    payments: Payments,
    *,
    settings: Settings,
    cache: Cache,
    announcer: Announcer,
    limit: int = 200,
) -> ReconcileReport:
    """Ask the platforms about pending orders older than ``reconcile_after_minutes`` (a missed
    notification is repaired here), close expired ones at the platform, and settle refunds still
    processing. Every repair is counted and logged as a discrepancy."""
    report = ReconcileReport()
    now = utcnow()
    cutoff = now - timedelta(minutes=settings.reconcile_after_minutes)
    async with unit_of_work(sessions) as session:
        orders = await repository.stale_pending_orders(session, created_before=cutoff, limit=limit)
        processing = await repository.processing_refunds(
            session, created_before=now - timedelta(minutes=1), limit=limit
        )
    for order in orders:
        await _reconcile_order(
            report, order, now, sessions, payments, settings=settings, cache=cache, announcer=announcer
        )
    for refund in processing:
        await _reconcile_refund(report, refund, sessions, payments, cache=cache, announcer=announcer)
    for name, value in report.as_dict().items():
        if value:
            PAYMENT_EVENTS.labels("all", f"reconcile_{name}").inc(value)
    return report


async def _reconcile_order(
    report: ReconcileReport,
    order: Order,
    now: datetime,
    sessions: async_sessionmaker[AsyncSession],
    payments: Payments,
    *,
    settings: Settings,
    cache: Cache,
    announcer: Announcer,
) -> None:
    """Fulfil a pending order the platform says is paid; close it when closed there or expired."""
    provider = PaymentChannel(order.channel).provider
    gateway = payments.gateways.get(provider)
    if gateway is None:
        return
    try:
        trade = await gateway.query(order.order_no)
        if trade.state in (TradeState.PAID, TradeState.REFUNDED):
            async with unit_of_work(sessions) as session:
                outcome = await fulfilment.apply_payment(
                    session,
                    order.order_no,
                    trade,
                    source="reconcile",
                    settings=settings,
                    cache=cache,
                    announcer=announcer,
                )
            if outcome == "fulfilled":
                RECONCILIATION_REPAIRS.labels(provider).inc()  # committed: a missed payment notification
                report.fulfilled += 1
                report.discrepancies += 1
                log.warning("missed_notification_repaired", order_no=order.order_no)
            elif outcome == "amount_mismatch":
                report.discrepancies += 1
        elif trade.state is TradeState.CLOSED or order.expires_at <= now:
            if trade.state is not TradeState.CLOSED:
                await gateway.close(order.order_no)
            async with unit_of_work(sessions) as session:
                report.closed += await repository.close_if_pending(session, order.id)
    except (PlatformUnavailable, PlatformRefused) as exc:
        report.errors += 1
        log.warning("reconcile_order_failed", order_no=order.order_no, error=str(exc))


async def _reconcile_refund(
    report: ReconcileReport,
    refund: Refund,
    sessions: async_sessionmaker[AsyncSession],
    payments: Payments,
    *,
    cache: Cache,
    announcer: Announcer,
) -> None:
    """Settle a refund still processing from the platform's answer, or send it if it never arrived."""
    async with unit_of_work(sessions) as session:
        refunded = await session.get(Order, refund.order_id)
    if refunded is None:
        return
    gateway = payments.gateways.get(PaymentChannel(refunded.channel).provider)
    if gateway is None:
        return
    try:
        result = await gateway.query_refund(refunded, refund.refund_no)
    except PlatformRefused as refused:
        if refused.code in ("RESOURCE_NOT_EXISTS", "NOT_FOUND", "ORDER_NOT_EXIST"):
            # the request itself never arrived: send it
            await refunds.push_refund(sessions, payments, refund.id, cache=cache, announcer=announcer)
        report.errors += 1
        return
    except PlatformUnavailable:
        report.errors += 1
        return
    async with unit_of_work(sessions) as session:
        outcome = await refunds.settle_refund(session, refund.id, result, cache=cache, announcer=announcer)
    if outcome in ("refund_succeeded", "refund_failed"):
        RECONCILIATION_REPAIRS.labels(PaymentChannel(refunded.channel).provider).inc()  # a missed refund notification
        report.refunds_settled += 1
