"""Orders, fulfilment, refunds and reconciliation (C5-C8).

Rules that hold everywhere here:

- **No network call inside a database transaction.** An order is committed before the platform
  is asked to open the trade; a refund (and the hold on the quota it takes back) is committed
  before the platform is asked to refund.
- **Money moves once.** An order is fulfilled by the one transaction that moves it out of
  ``pending``/``closed`` under a row lock, with its ledger entries (``order:{no}``) in the same
  transaction; a refund settles by the one conditional update that moves it out of
  ``processing``. Notifications, reconciliation and retries may all arrive at once: the losers
  find the work done and change nothing.
- **Claw-backs never go below zero.** A refund first *holds* the quota it will take back (the
  normal reserve, so the user cannot spend it meanwhile) and is refused with
  ``REFUND_EXCEEDS_UNSPENT`` when the user has already spent it: we limit the refund rather than
  record a debt (an operator can still refund less, or adjust quota with a reason). The hold is
  confirmed when the platform confirms the refund, and released if the refund fails.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.infra import Infra
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import PAYMENT_EVENTS
from wardrobe.models import (
    LedgerKind,
    Order,
    OrderStatus,
    PaymentChannel,
    PaymentNotification,
    Plan,
    PlanKind,
    QuotaAccount,
    Referral,
    Refund,
    RefundStatus,
    User,
)
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.modules.billing.service import membership_changed
from wardrobe.modules.payments.gateway import (
    Notification,
    NotificationKind,
    PaymentGateway,
    PlatformRefused,
    PlatformUnavailable,
    RefundResult,
    RefundState,
    Trade,
    TradeState,
)

log = get_logger("wardrobe.payments")
REFUND_HOLD_TTL = timedelta(days=30)
REFUNDABLE = (OrderStatus.FULFILLED.value, OrderStatus.PARTIALLY_REFUNDED.value, OrderStatus.REFUNDING.value)
NOTIFY_PATHS = {
    "wechat": "/api/v1/payments/wechat/notify",
    "wechat_refund": "/api/v1/payments/wechat/refund-notify",
    "alipay": "/api/v1/payments/alipay/notify",
}


def new_order_no() -> str:
    """28 characters, time-ordered, unguessable: ``WD`` + UTC second + 12 hex (WeChat allows 6-32)."""
    return f"WD{utcnow():%Y%m%d%H%M%S}{secrets.token_hex(6).upper()}"


def new_refund_no(order_no: str) -> str:
    return f"R{order_no[2:]}{secrets.token_hex(3).upper()}"


@dataclass
class Payments:
    """The configured platforms of this process, by provider (``wechat``, ``alipay``)."""

    gateways: dict[str, PaymentGateway]
    notify_base_url: str

    def gateway(self, provider: str) -> PaymentGateway:
        found = self.gateways.get(provider)
        if found is None:
            raise AppError(ErrorCode.PAYMENT_CHANNEL_UNAVAILABLE, detail=f"{provider} is not configured")
        return found

    def notify_url(self, which: str) -> str:
        return self.notify_base_url.rstrip("/") + NOTIFY_PATHS[which]

    async def start(self) -> None:
        for gateway in self.gateways.values():
            await gateway.start()

    async def aclose(self) -> None:
        for gateway in self.gateways.values():
            await gateway.aclose()


def payments_of(infra: Infra) -> Payments:
    payments: Payments = infra.payments
    return payments


# -- orders ------------------------------------------------------------------------------------


async def create_order(infra: Infra, user: User, *, sku: str, channel: PaymentChannel, client_ip: str) -> Order:
    payments = payments_of(infra)
    gateway = payments.gateway(channel.provider)
    if channel is PaymentChannel.WECHAT_JSAPI and not user.wechat_openid:
        raise AppError(ErrorCode.PAYMENT_CHANNEL_UNAVAILABLE, detail="JSAPI needs a WeChat login")
    async with unit_of_work(infra.session_factory) as session:
        plan = await session.get(Plan, sku)
        if plan is None or not plan.is_active or plan.price_fen <= 0:
            raise AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": "sku", "message": "no such plan on sale"}])
        order = Order(
            order_no=new_order_no(),
            user_id=user.id,
            sku=plan.sku,
            kind=plan.kind,
            name=plan.name,
            quota=plan.quota,
            period_days=plan.period_days,
            channel=channel.value,
            amount_fen=plan.price_fen,
            status=OrderStatus.PENDING.value,
            expires_at=utcnow() + timedelta(minutes=infra.settings.order_ttl_minutes),
        )
        session.add(order)
    PAYMENT_EVENTS.labels(channel.provider, "order_created").inc()
    try:
        pay_params = await gateway.create(
            order, notify_url=payments.notify_url(channel.provider), openid=user.wechat_openid, client_ip=client_ip
        )
    except PlatformRefused as refused:
        await _set_status(infra, order, OrderStatus.CLOSED)
        log.warning("order_refused_by_platform", order_no=order.order_no, code=refused.code)
        raise AppError(ErrorCode.PAYMENT_PLATFORM_ERROR, data={"platform_code": refused.code}) from refused
    except PlatformUnavailable as down:
        # Left pending without pay parameters: the reconciliation job closes it at expiry.
        raise AppError(ErrorCode.DEPENDENCY_UNAVAILABLE, headers={"Retry-After": "5"}, detail=str(down)) from down
    async with unit_of_work(infra.session_factory) as session:
        await session.execute(update(Order).where(Order.id == order.id).values(pay_params=pay_params))
    order.pay_params = pay_params
    return order


async def _set_status(infra: Infra, order: Order, status: OrderStatus) -> None:
    async with unit_of_work(infra.session_factory) as session:
        await session.execute(
            update(Order)
            .where(Order.id == order.id, Order.status == OrderStatus.PENDING.value)
            .values(status=status.value, closed_at=utcnow())
        )
    order.status = status.value


async def order_of(session: AsyncSession, user_id: int | None, order_no: str) -> Order:
    stmt = select(Order).where(Order.order_no == order_no)
    if user_id is not None:
        stmt = stmt.where(Order.user_id == user_id)
    found = await session.scalar(stmt)
    if found is None:
        raise NotFound()
    return found


async def orders_page(
    session: AsyncSession, *, user_id: int | None, limit: int, before_id: int | None, status: str | None = None
) -> list[Order]:
    stmt = select(Order).order_by(Order.id.desc()).limit(limit + 1)
    if user_id is not None:
        stmt = stmt.where(Order.user_id == user_id)
    if before_id is not None:
        stmt = stmt.where(Order.id < before_id)
    if status:
        stmt = stmt.where(Order.status == status)
    return list(await session.scalars(stmt))


def announce_order(infra: Infra, session: AsyncSession, order_id: int) -> None:
    """Push ``order.updated`` to the user once this transaction commits, durably (outbox)."""
    infra.runtime.push_order_durably(session, order_id)


# -- fulfilment ----------------------------------------------------------------------------------


async def apply_payment(infra: Infra, session: AsyncSession, order_no: str, trade: Trade, *, source: str) -> str:
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
    order = await session.scalar(
        select(Order).where(Order.order_no == order_no).execution_options(populate_existing=True)
    )
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
    if order.quota > 0:
        await quota.credit(session, order.user_id, order.quota, kind=LedgerKind.PURCHASE, ref=ref, note=order.sku)
    if order.kind == PlanKind.MEMBERSHIP.value and order.period_days:
        await _extend_membership(session, order)
        membership_changed(session, infra.cache, order.user_id)
    await _rebate(session, order, infra.settings.referral_rebate_percent)
    announce_order(infra, session, order.id)
    await session.flush()
    PAYMENT_EVENTS.labels(PaymentChannel(order.channel).provider, f"fulfilled_by_{source}").inc()
    log.info("order_fulfilled", order_no=order_no, source=source)
    return "fulfilled"


async def _extend_membership(session: AsyncSession, order: Order) -> None:
    account = await session.scalar(select(QuotaAccount).where(QuotaAccount.user_id == order.user_id).with_for_update())
    if account is None:
        raise NotFound(detail="quota account missing")
    now = utcnow()
    start = (
        account.membership_expires_at if account.membership_expires_at and account.membership_expires_at > now else now
    )
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


# -- notifications -------------------------------------------------------------------------------


class NotificationRejected(Exception):
    """A verified notification we must not accept (unknown order, wrong amount or merchant)."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


async def handle_notification(infra: Infra, provider: str, notification: Notification) -> str:
    """Inbox then process, in one transaction that commits before the platform hears "success".
    A duplicate (same provider and event id) finds the inbox row and does nothing."""
    if not notification.merchant_ok:
        PAYMENT_EVENTS.labels(provider, "wrong_merchant").inc()
        raise NotificationRejected("wrong merchant or app", 400)
    async with unit_of_work(infra.session_factory) as session:
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
        outcome = await _process(infra, session, notification)
        if outcome in ("unknown_order", "amount_mismatch", "unknown_refund"):
            raise NotificationRejected(outcome, 404 if outcome.startswith("unknown") else 400)
        row.outcome = outcome
        row.processed_at = utcnow()
    return outcome


async def _process(infra: Infra, session: AsyncSession, notification: Notification) -> str:
    if notification.order_no is None:
        return "ignored"
    if notification.kind is NotificationKind.PAYMENT and notification.trade is not None:
        return await apply_payment(infra, session, notification.order_no, notification.trade, source="notify")
    if notification.kind is NotificationKind.REFUND and notification.refund_no and notification.refund is not None:
        refund = await session.scalar(select(Refund).where(Refund.refund_no == notification.refund_no))
        if refund is None:
            return "unknown_refund"
        return await settle_refund(infra, session, refund.id, notification.refund)
    return "ignored"


# -- refunds -------------------------------------------------------------------------------------


async def request_refund(infra: Infra, *, actor_id: int, order_no: str, amount_fen: int | None, reason: str) -> Refund:
    """Admin refund (full by default). Holds the quota to take back, then asks the platform."""
    async with unit_of_work(infra.session_factory) as session:
        order = await session.scalar(select(Order).where(Order.order_no == order_no))
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
        announce_order(infra, session, order.id)
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
    await push_refund(infra, refund.id)
    async with unit_of_work(infra.session_factory) as session:
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


async def push_refund(infra: Infra, refund_id: int) -> None:
    """Ask the platform (again: the refund number makes it idempotent) and settle what it says."""
    async with unit_of_work(infra.session_factory) as session:
        refund = await session.get(Refund, refund_id)
        order = await session.get(Order, refund.order_id) if refund is not None else None
    if refund is None or order is None or refund.status != RefundStatus.PROCESSING.value:
        return
    provider = PaymentChannel(order.channel).provider
    gateway = payments_of(infra).gateway(provider)
    notify = payments_of(infra).notify_url("wechat_refund" if provider == "wechat" else "alipay")
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
    async with unit_of_work(infra.session_factory) as session:
        await settle_refund(infra, session, refund.id, result)


async def settle_refund(infra: Infra, session: AsyncSession, refund_id: int, result: RefundResult) -> str:
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
            membership_changed(session, infra.cache, order.user_id)
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
    announce_order(infra, session, order.id)
    PAYMENT_EVENTS.labels(PaymentChannel(order.channel).provider, outcome).inc()
    return outcome


async def _shorten_membership(session: AsyncSession, order: Order, amount_fen: int) -> None:
    account = await session.scalar(select(QuotaAccount).where(QuotaAccount.user_id == order.user_id).with_for_update())
    if account is None or account.membership_expires_at is None or not order.paid_fen:
        return
    days = (order.period_days or 0) * amount_fen / order.paid_fen
    account.membership_expires_at = account.membership_expires_at - timedelta(days=days)


# -- reconciliation (C8) ---------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    fulfilled: int = 0
    closed: int = 0
    refunds_settled: int = 0
    discrepancies: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def reconcile_once(infra: Infra, *, limit: int = 200) -> ReconcileReport:
    """Ask the platforms about pending orders older than ``reconcile_after_minutes`` (a missed
    notification is repaired here), close expired ones at the platform, and settle refunds still
    processing. Every repair is counted and logged as a discrepancy."""
    report = ReconcileReport()
    payments = payments_of(infra)
    now = utcnow()
    cutoff = now - timedelta(minutes=infra.settings.reconcile_after_minutes)
    async with unit_of_work(infra.session_factory) as session:
        orders = list(
            await session.scalars(
                select(Order)
                .where(Order.status == OrderStatus.PENDING.value, Order.created_at < cutoff)
                .order_by(Order.id)
                .limit(limit)
            )
        )
        refunds = list(
            await session.scalars(
                select(Refund)
                .where(Refund.status == RefundStatus.PROCESSING.value, Refund.created_at < now - timedelta(minutes=1))
                .order_by(Refund.id)
                .limit(limit)
            )
        )
    for order in orders:
        provider = PaymentChannel(order.channel).provider
        gateway = payments.gateways.get(provider)
        if gateway is None:
            continue
        try:
            trade = await gateway.query(order.order_no)
            if trade.state in (TradeState.PAID, TradeState.REFUNDED):
                async with unit_of_work(infra.session_factory) as session:
                    outcome = await apply_payment(infra, session, order.order_no, trade, source="reconcile")
                if outcome == "fulfilled":
                    report.fulfilled += 1
                    report.discrepancies += 1
                    log.warning("missed_notification_repaired", order_no=order.order_no)
                elif outcome == "amount_mismatch":
                    report.discrepancies += 1
            elif trade.state is TradeState.CLOSED or order.expires_at <= now:
                if trade.state is not TradeState.CLOSED:
                    await gateway.close(order.order_no)
                async with unit_of_work(infra.session_factory) as session:
                    closed = await session.execute(
                        update(Order)
                        .where(Order.id == order.id, Order.status == OrderStatus.PENDING.value)
                        .values(status=OrderStatus.CLOSED.value, closed_at=utcnow())
                    )
                report.closed += int(closed.rowcount or 0)  # type: ignore[attr-defined]
        except (PlatformUnavailable, PlatformRefused) as exc:
            report.errors += 1
            log.warning("reconcile_order_failed", order_no=order.order_no, error=str(exc))
    for refund in refunds:
        async with unit_of_work(infra.session_factory) as session:
            refunded = await session.get(Order, refund.order_id)
        if refunded is None:
            continue
        gateway = payments.gateways.get(PaymentChannel(refunded.channel).provider)
        if gateway is None:
            continue
        try:
            result = await gateway.query_refund(refunded, refund.refund_no)
        except PlatformRefused as refused:
            if refused.code in ("RESOURCE_NOT_EXISTS", "NOT_FOUND", "ORDER_NOT_EXIST"):
                await push_refund(infra, refund.id)  # the request itself never arrived: send it
            report.errors += 1
            continue
        except PlatformUnavailable:
            report.errors += 1
            continue
        async with unit_of_work(infra.session_factory) as session:
            outcome = await settle_refund(infra, session, refund.id, result)
        if outcome in ("refund_succeeded", "refund_failed"):
            report.refunds_settled += 1
    for name, value in report.as_dict().items():
        if value:
            PAYMENT_EVENTS.labels("all", f"reconcile_{name}").inc(value)
    return report


def order_body(order: Order) -> dict[str, Any]:
    return {
        "order_no": order.order_no,
        "status": order.status,
        "sku": order.sku,
        "kind": order.kind,
        "name": order.name,
        "channel": order.channel,
        "amount_fen": order.amount_fen,
        "paid_fen": order.paid_fen,
        "refunded_fen": order.refunded_fen,
        "pay_params": order.pay_params if order.status == OrderStatus.PENDING.value else None,
        "expires_at": order.expires_at,
        "paid_at": order.paid_at,
        "created_at": order.created_at,
    }
