"""The platforms' notifications: inbox first, then the payment or refund they confirm, in one
transaction that commits before the platform hears "success"."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache
from wardrobe.core.db import unit_of_work
from wardrobe.core.metrics import PAYMENT_EVENTS
from wardrobe.core.outbox import Announcer
from wardrobe.models import PaymentNotification
from wardrobe.models.base import utcnow
from wardrobe.modules.payments import fulfilment, refunds, repository
from wardrobe.modules.payments.gateway import Notification, NotificationKind
from wardrobe.settings import Settings


class NotificationRejected(Exception):
    """A verified notification we must not accept (unknown order, wrong amount or merchant)."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


async def handle_notification(
    sessions: async_sessionmaker[AsyncSession],
    provider: str,
    notification: Notification,
    *,
    settings: Settings,
    cache: Cache,
    announcer: Announcer,
) -> str:
    """Inbox then process, in one transaction that commits before the platform hears "success".
    A duplicate (same provider and event id) finds the inbox row and does nothing."""
    if not notification.merchant_ok:
        PAYMENT_EVENTS.labels(provider, "wrong_merchant").inc()
        raise NotificationRejected("wrong merchant or app", 400)
    async with unit_of_work(sessions) as session:
        # The inbox row is the transaction's first write, so a duplicate simply rolls it all back
        # (no savepoint needed), and a notification whose processing fails leaves no row behind:
        # the platform's retry is processed, not taken for a duplicate.
        row = PaymentNotification(
            provider=provider,
            event_id=notification.event_id[:96],
            event_type=notification.event_type[:48],
            order_no=(notification.order_no or "")[:32] or None,
            payload=notification.record,
            attempts=1,
        )
        session.add(row)
        try:
            await session.flush()
        except IntegrityError:
            await session.rollback()
            PAYMENT_EVENTS.labels(provider, "duplicate_notification").inc()
            return "duplicate"
        outcome = await _process(session, notification, settings=settings, cache=cache, announcer=announcer)
        if outcome in ("unknown_order", "amount_mismatch", "unknown_refund"):
            raise NotificationRejected(outcome, 404 if outcome.startswith("unknown") else 400)
        row.outcome = outcome
        row.processed_at = utcnow()
    return outcome


async def _process(
    session: AsyncSession, notification: Notification, *, settings: Settings, cache: Cache, announcer: Announcer
) -> str:
    if notification.order_no is None:
        return "ignored"
    if notification.kind is NotificationKind.PAYMENT and notification.trade is not None:
        return await fulfilment.apply_payment(
            session,
            notification.order_no,
            notification.trade,
            source="notify",
            settings=settings,
            cache=cache,
            announcer=announcer,
        )
    if notification.kind is NotificationKind.REFUND and notification.refund_no and notification.refund is not None:
        refund = await repository.refund_by_no(session, notification.refund_no)
        if refund is None:
            return "unknown_refund"
        return await refunds.settle_refund(session, refund.id, notification.refund, cache=cache, announcer=announcer)
    return "ignored"
