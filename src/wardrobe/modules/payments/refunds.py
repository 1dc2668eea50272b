"""Refunds: an admin asks, the quota to take back is held, the platform is asked, and the refund
settles once, whether the platform's answer, its notification or reconciliation says so first."""

from __future__ import annotations

import math
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache
from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import PAYMENT_EVENTS
from wardrobe.core.outbox import Announcer
from wardrobe.models import LedgerKind, Order, OrderStatus, PaymentChannel, PlanKind, Refund, RefundStatus
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.modules.billing.service import membership_changed
from wardrobe.modules.payments import repository
from wardrobe.modules.payments.gateway import Payments, PlatformRefused, PlatformUnavailable, RefundResult, RefundState
from wardrobe.modules.payments.orders import announce_order

log = get_logger("wardrobe.payments")
REFUND_HOLD_TTL = timedelta(days=30)
REFUNDABLE = (OrderStatus.FULFILLED.value, OrderStatus.PARTIALLY_REFUNDED.value, OrderStatus.REFUNDING.value)


def new_refund_no(order_no: str) -> str:
    return f"R{order_no[2:]}{secrets.token_hex(3).upper()}"


async def request_refund(
    sessions: async_sessionmaker[AsyncSession],
    payments: Payments,
    *,
    actor_id: int,
    order_no: str,
    amount_fen: int | None,
    reason: str,
    cache: Cache,
    announcer: Announcer,
) -> Refund:
    """Admin refund (full by default). Holds the quota to take back, then asks the platform."""
    async with unit_of_work(sessions) as session:
        order = await repository.order_by_no(session, order_no)
        if order is None:
            raise NotFound()
        if order.status not in REFUNDABLE:
            raise AppError(ErrorCode.REFUND_NOT_ALLOWED, data={"status": order.status})
        refundable = order.paid_fen - order.refunded_fen - order.refund_pending_fen
        amount = refundable if amount_fen is None else amount_fen
        if amount <= 0 or amount > refundable:
            raise AppError(ErrorCode.REFUND_NOT_ALLOWED, data={"refundable_fen": refundable})
        # Claimed by a conditional update, so concurrent refunds can never add up to more than
        # was paid (the check constraint says the same in the database).
        claimed = await session.execute(
            update(Order)
            .where(
                Order.id == order.id,
                Order.status.in_(REFUNDABLE),
                Order.paid_fen - Order.refunded_fen - Order.refund_pending_fen >= amount,
            )
            .values(refund_pending_fen=Order.refund_pending_fen + amount, status=OrderStatus.REFUNDING.value)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise AppError(ErrorCode.REFUND_NOT_ALLOWED, detail="a concurrent refund took the amount")
        await session.refresh(order)
        announce_order(announcer, session, order.id)
        claw = _claw_back(order, already_fen=order.refunded_fen + order.refund_pending_fen - amount, amount_fen=amount)
        refund = Refund(
            refund_no=new_refund_no(order.order_no),
            order_id=order.id,
            amount_fen=amount,
            quota=claw,
            reason=reason,
            actor_id=actor_id,
        )
        session.add(refund)
        await session.flush()
        if claw > 0:
            try:
                await quota.reserve(session, order.user_id, claw, ref=f"refund:{refund.refund_no}", ttl=REFUND_HOLD_TTL)
            except quota.QuotaInsufficient as short:
                available = (await quota.get_balance(session, order.user_id)).available
                raise AppError(
                    ErrorCode.REFUND_EXCEEDS_UNSPENT,
                    data={"quota_needed": claw, "quota_available": available},
                ) from short
    PAYMENT_EVENTS.labels(PaymentChannel(order.channel).provider, "refund_requested").inc()
    await push_refund(sessions, payments, refund.id, cache=cache, announcer=announcer)
    async with unit_of_work(sessions) as session:
        fresh = await session.get(Refund, refund.id)
        assert fresh is not None  # noqa: S101 - committed above
        return fresh


def _claw_back(order: Order, *, already_fen: int, amount_fen: int) -> int:
    """Quota to take back for refunding ``amount_fen`` more, proportional and cumulative, so that
    refunding everything takes back exactly everything."""
    if order.paid_fen <= 0:
        return 0
    before = math.floor(order.quota * already_fen / order.paid_fen)
    after = math.floor(order.quota * (already_fen + amount_fen) / order.paid_fen)
    return max(0, after - before)


async def push_refund(
    sessions: async_sessionmaker[AsyncSession],
    payments: Payments,
    refund_id: int,
    *,
    cache: Cache,
    announcer: Announcer,
) -> None:
    """Ask the platform (again: the refund number makes it idempotent) and settle what it says."""
    async with unit_of_work(sessions) as session:
        refund = await session.get(Refund, refund_id)
        order = await session.get(Order, refund.order_id) if refund is not None else None
    if refund is None or order is None or refund.status != RefundStatus.PROCESSING.value:
        return
    provider = PaymentChannel(order.channel).provider
    gateway = payments.gateway(provider)
    notify = payments.notify_url("wechat_refund" if provider == "wechat" else provider)
    try:
        result = await gateway.refund(
            order, refund_no=refund.refund_no, amount_fen=refund.amount_fen, reason=refund.reason, notify_url=notify
        )
    except PlatformUnavailable:
        log.warning("refund_platform_unavailable", refund_no=refund.refund_no)
        return  # still processing: reconciliation asks again
    except PlatformRefused as refused:
        log.warning("refund_refused", refund_no=refund.refund_no, code=refused.code)
        result = RefundResult(RefundState.FAILED)
    async with unit_of_work(sessions) as session:
        await settle_refund(session, refund.id, result, cache=cache, announcer=announcer)


async def settle_refund(
    session: AsyncSession, refund_id: int, result: RefundResult, *, cache: Cache, announcer: Announcer
) -> str:
    """Apply a refund's final state once (conditional update out of ``processing``)."""
    if result.state is RefundState.PROCESSING:
        return "refund_processing"
    refund = await session.get(Refund, refund_id)
    if refund is None:
        return "unknown_refund"
    succeeded = result.state is RefundState.SUCCEEDED
    moved = await session.execute(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status == RefundStatus.PROCESSING.value)
        .values(
            status=RefundStatus.SUCCEEDED.value if succeeded else RefundStatus.FAILED.value,
            platform_refund_id=result.platform_refund_id,
            settled_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return "already_settled"
    amount, clawed = refund.amount_fen, refund.quota if succeeded else 0
    await session.execute(
        update(Order)
        .where(Order.id == refund.order_id)
        .values(
            refund_pending_fen=Order.refund_pending_fen - amount,
            refunded_fen=Order.refunded_fen + (amount if succeeded else 0),
            quota_clawed=Order.quota_clawed + clawed,
        )
        .execution_options(synchronize_session=False)
    )
    order = await session.scalar(
        select(Order).where(Order.id == refund.order_id).execution_options(populate_existing=True)
    )
    if order is None:
        return "unknown_refund"
    hold_ref = f"refund:{refund.refund_no}"
    if succeeded:
        if refund.quota > 0:
            await quota.confirm(session, hold_ref, kind=LedgerKind.REFUND_CLAWBACK)
        if order.kind == PlanKind.MEMBERSHIP.value and order.period_days:
            await _shorten_membership(session, order, amount)
            membership_changed(session, cache, order.user_id)
        outcome = "refund_succeeded"
    else:
        if refund.quota > 0:
            await quota.cancel(session, hold_ref)
        outcome = "refund_failed"
    if order.refund_pending_fen > 0:
        status = OrderStatus.REFUNDING
    elif order.refunded_fen >= order.paid_fen:
        status = OrderStatus.REFUNDED
    elif order.refunded_fen > 0:
        status = OrderStatus.PARTIALLY_REFUNDED
    else:
        status = OrderStatus.FULFILLED
    await session.execute(update(Order).where(Order.id == order.id).values(status=status.value, updated_at=utcnow()))
    announce_order(announcer, session, order.id)
    PAYMENT_EVENTS.labels(PaymentChannel(order.channel).provider, outcome).inc()
    return outcome


async def _shorten_membership(session: AsyncSession, order: Order, amount_fen: int) -> None:
    account = await repository.quota_account_for_update(session, order.user_id)
    if account is None or account.membership_expires_at is None or not order.paid_fen:
        return
    days = (order.period_days or 0) * amount_fen / order.paid_fen
    account.membership_expires_at = account.membership_expires_at - timedelta(days=days)
