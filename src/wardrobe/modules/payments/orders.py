"""Orders: opening one at a platform, reading them, and announcing their changes to the buyer."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import PAYMENT_EVENTS
from wardrobe.core.outbox import TOPIC_PUSH, Announcer
from wardrobe.models import Order, OrderStatus, PaymentChannel, Plan, User
from wardrobe.models.base import utcnow
from wardrobe.modules.billing.plans import on_sale
from wardrobe.modules.payments import repository
from wardrobe.modules.payments.gateway import Payments, PlatformRefused, PlatformUnavailable
from wardrobe.settings import Settings

log = get_logger("wardrobe.payments")


def new_order_no() -> str:
    """28 characters, time-ordered, unguessable: ``WD`` + UTC second + 12 hex (WeChat allows 6-32)."""
    return f"WD{utcnow():%Y%m%d%H%M%S}{secrets.token_hex(6).upper()}"


async def create_order(
    sessions: async_sessionmaker[AsyncSession],
    payments: Payments,
    settings: Settings,
    user: User,
    *,
    sku: str,
    channel: PaymentChannel,
    client_ip: str,
) -> Order:
    """Commit a pending order for the plan ``sku``, then open its trade at the platform and keep
    what the client needs to pay. Each step commits on its own (``sessions``): the platform is
    never asked inside a transaction. A plan that is inactive, outside its validity window or not
    offered on ``channel`` is refused with ``PLAN_NOT_ON_SALE``; an unknown one with
    ``VALIDATION_FAILED`` on ``sku``. The order snapshots name, price, quota and period."""
    gateway = payments.gateway(channel.provider)
    if channel is PaymentChannel.WECHAT_JSAPI and not user.wechat_openid:
        raise AppError(ErrorCode.PAYMENT_CHANNEL_UNAVAILABLE, detail="JSAPI needs a WeChat login")
    async with unit_of_work(sessions) as session:
        # The plan as stored now, not as cached: the order snapshots exactly what is on sale.
        plan = on_sale(await session.get(Plan, sku), channel.value, utcnow())
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
            expires_at=utcnow() + timedelta(minutes=settings.order_ttl_minutes),
        )
        session.add(order)
    PAYMENT_EVENTS.labels(channel.provider, "order_created").inc()
    try:
        pay_params = await gateway.create(
            order, notify_url=payments.notify_url(channel.provider), openid=user.wechat_openid, client_ip=client_ip
        )
    except PlatformRefused as refused:
        await _close(sessions, order)
        log.warning("order_refused_by_platform", order_no=order.order_no, code=refused.code)
        raise AppError(ErrorCode.PAYMENT_PLATFORM_ERROR, data={"platform_code": refused.code}) from refused
    except PlatformUnavailable as down:
        # Left pending without pay parameters: the reconciliation job closes it at expiry.
        raise AppError(ErrorCode.DEPENDENCY_UNAVAILABLE, headers={"Retry-After": "5"}, detail=str(down)) from down
    async with unit_of_work(sessions) as session:
        await session.execute(update(Order).where(Order.id == order.id).values(pay_params=pay_params))
    order.pay_params = pay_params
    return order


async def _close(sessions: async_sessionmaker[AsyncSession], order: Order) -> None:
    async with unit_of_work(sessions) as session:
        await repository.close_if_pending(session, order.id)
    order.status = OrderStatus.CLOSED.value


async def order_of(session: AsyncSession, user_id: int | None, order_no: str) -> Order:
    """The order numbered ``order_no`` (of ``user_id`` when given), or ``NotFound``."""
    found = await repository.order_by_no(session, order_no, user_id=user_id)
    if found is None:
        raise NotFound()
    return found


def announce_order(announcer: Announcer, session: AsyncSession, order_id: int) -> None:
    """Push ``order.updated`` to the user once this transaction commits, durably (outbox)."""
    announcer.durable(session, TOPIC_PUSH, {"order_id": order_id})


def order_body(order: Order) -> dict[str, Any]:
    """The order as its buyer sees it (``OrderOut``): pay parameters only while it is pending."""
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
