"""The payment queries shared by the endpoints and the services. They never commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import Order, OrderStatus, QuotaAccount, Refund, RefundStatus
from wardrobe.models.base import utcnow


async def order_by_no(
    session: AsyncSession, order_no: str, *, user_id: int | None = None, fresh: bool = False
) -> Order | None:
    """The order numbered ``order_no`` (of ``user_id`` when given). ``fresh`` reloads it over any
    copy the session holds, after an UPDATE that bypassed the identity map."""
    stmt = select(Order).where(Order.order_no == order_no)
    if user_id is not None:
        stmt = stmt.where(Order.user_id == user_id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    found: Order | None = await session.scalar(stmt)
    return found


async def orders_page(
    session: AsyncSession, *, user_id: int | None, limit: int, before_id: int | None, status: str | None = None
) -> list[Order]:
    """Newest first, one more than ``limit`` so the caller knows whether a next page exists."""
    stmt = select(Order).order_by(Order.id.desc()).limit(limit + 1)
    if user_id is not None:
        stmt = stmt.where(Order.user_id == user_id)
    if before_id is not None:
        stmt = stmt.where(Order.id < before_id)
    if status:
        stmt = stmt.where(Order.status == status)
    return list(await session.scalars(stmt))


async def stale_pending_orders(session: AsyncSession, *, created_before: datetime, limit: int) -> list[Order]:
    stmt = (
        select(Order)
        .where(Order.status == OrderStatus.PENDING.value, Order.created_at < created_before)
        .order_by(Order.id)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def close_if_pending(session: AsyncSession, order_id: int) -> int:
    """Close the order unless something already moved it out of ``pending``; 1 if it closed it."""
    closed = await session.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == OrderStatus.PENDING.value)
        .values(status=OrderStatus.CLOSED.value, closed_at=utcnow())
    )
    return int(closed.rowcount or 0)  # type: ignore[attr-defined]


async def refunds_of_order(session: AsyncSession, order_id: int) -> list[Refund]:
    return list(await session.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)))


async def refund_by_no(session: AsyncSession, refund_no: str) -> Refund | None:
    found: Refund | None = await session.scalar(select(Refund).where(Refund.refund_no == refund_no))
    return found


async def processing_refunds(session: AsyncSession, *, created_before: datetime, limit: int) -> list[Refund]:
    stmt = (
        select(Refund)
        .where(Refund.status == RefundStatus.PROCESSING.value, Refund.created_at < created_before)
        .order_by(Refund.id)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def quota_account_for_update(session: AsyncSession, user_id: int) -> QuotaAccount | None:
    """The buyer's quota account, locked: a membership's expiry moves under this lock."""
    found: QuotaAccount | None = await session.scalar(
        select(QuotaAccount)
        .where(QuotaAccount.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)  # over any copy loaded before a Core UPDATE
    )
    return found
