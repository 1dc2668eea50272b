"""Fulfilment: a confirmed payment credits the order's quota, extends a membership and pays the
referrer's rebate, once, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.cache import Cache
from wardrobe.core.errors import NotFound
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import PAYMENT_EVENTS
from wardrobe.core.outbox import Announcer
from wardrobe.models import LedgerKind, Order, OrderStatus, PaymentChannel, PlanKind, QuotaAccount, Referral
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.modules.billing.memberships import end_membership
from wardrobe.modules.billing.service import membership_changed
from wardrobe.modules.payments import repository
from wardrobe.modules.payments.gateway import Trade, TradeState
from wardrobe.modules.payments.orders import announce_order
from wardrobe.settings import Settings

log = get_logger("wardrobe.payments")


async def apply_payment(
    session: AsyncSession,
    order_no: str,
    trade: Trade,
    *,
    source: str,
    settings: Settings,
    cache: Cache,
    announcer: Announcer,
) -> str:
    """Record a confirmed payment and fulfil the order, in the caller's transaction. Returns the
    outcome: ``fulfilled``, ``already_fulfilled``, ``not_paid``, ``amount_mismatch`` or
    ``unknown_order`` (the last two change nothing)."""
    if trade.state not in (TradeState.PAID, TradeState.REFUNDED):
        return "not_paid"
    now = utcnow()
    # The transition itself is the guard (SQLite has no row locks, and a read-then-write would let
    # two confirmations both see "pending"): exactly one UPDATE can move the order out of
    # pending/closed, and only that transaction goes on to credit anything.
    moved = await session.execute(
        update(Order)
        .where(
            Order.order_no == order_no,
            Order.status.in_([OrderStatus.PENDING.value, OrderStatus.CLOSED.value]),
            Order.amount_fen == trade.paid_fen,
        )
        .values(
            status=OrderStatus.FULFILLED.value,
            paid_fen=trade.paid_fen,
            transaction_id=trade.transaction_id,
            paid_at=trade.paid_at or now,
            fulfilled_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    order = await repository.order_by_no(session, order_no, fresh=True)
    if order is None:
        return "unknown_order"
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        if order.status in (OrderStatus.PENDING.value, OrderStatus.CLOSED.value):
            log.error("payment_amount_mismatch", order_no=order_no, expected=order.amount_fen, got=trade.paid_fen)
            PAYMENT_EVENTS.labels(PaymentChannel(order.channel).provider, "amount_mismatch").inc()
            return "amount_mismatch"
        return "already_fulfilled"
    if order.closed_at is not None:
        log.warning("paid_after_close", order_no=order_no, source=source)
    ref = f"order:{order.order_no}"
    membership = order.kind == PlanKind.MEMBERSHIP.value and bool(order.period_days)
    if membership:
        # A membership that ended but was not yet expired by the scheduler ends now, before this
        # purchase credits anything: its unspent quota expires, and this one starts a new term.
        await _end_lapsed_membership(session, order.user_id, now)
    if order.quota > 0:
        await quota.credit(session, order.user_id, order.quota, kind=LedgerKind.PURCHASE, ref=ref, note=order.sku)
    if membership:
        await _extend_membership(session, order)
        membership_changed(session, cache, order.user_id)
    await _rebate(session, order, settings.referral_rebate_percent)
    announce_order(announcer, session, order.id)
    await session.flush()
    PAYMENT_EVENTS.labels(PaymentChannel(order.channel).provider, f"fulfilled_by_{source}").inc()
    log.info("order_fulfilled", order_no=order_no, source=source)
    return "fulfilled"


async def _end_lapsed_membership(session: AsyncSession, user_id: int, now: datetime) -> None:
    ends = await session.scalar(select(QuotaAccount.membership_expires_at).where(QuotaAccount.user_id == user_id))
    if ends is not None and ends <= now:
        await end_membership(session, user_id, ends)


async def _extend_membership(session: AsyncSession, order: Order) -> None:
    """Renew the active membership from its end, or start a term now (``order.fulfilled_at``: the
    term counts this order's quota as the membership's, memberships.py)."""
    account = await repository.quota_account_for_update(session, order.user_id)
    if account is None:
        raise NotFound(detail="quota account missing")
    now = order.fulfilled_at or utcnow()
    if account.membership_expires_at and account.membership_expires_at > now:
        start = account.membership_expires_at
    else:
        start = now
        account.membership_started_at = now
    account.membership_sku = order.sku
    account.membership_expires_at = start + timedelta(days=order.period_days or 0)


async def _rebate(session: AsyncSession, order: Order, percent: int) -> None:
    """The referrer's share of what an invitee bought, once per order (ledger ref)."""
    amount = order.quota * percent // 100
    if amount <= 0:
        return
    referrer = await session.scalar(select(Referral.referrer_id).where(Referral.referee_id == order.user_id))
    if referrer is None:
        return
    await quota.credit(
        session, referrer, amount, kind=LedgerKind.REFERRAL_REBATE, ref=f"rebate:{order.order_no}", note=order.sku
    )
