"""The billing queries of plans and memberships. They never commit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import FeatureDefinition, LedgerEntry, LedgerKind, Order, Plan, PlanKind, QuotaAccount


async def all_plans(session: AsyncSession) -> list[Plan]:
    """Every plan, inactive ones too, in the order they are shown."""
    return list(await session.scalars(select(Plan).order_by(Plan.sort_order, Plan.sku)))


async def plan_for_update(session: AsyncSession, sku: str) -> Plan | None:
    """The plan, locked until the transaction ends (two edits of one plan take turns)."""
    found: Plan | None = await session.scalar(
        select(Plan).where(Plan.sku == sku).with_for_update().execution_options(populate_existing=True)
    )
    return found


async def plans_by_sku(session: AsyncSession, skus: Iterable[str]) -> dict[str, Plan]:
    wanted = list(skus)
    if not wanted:
        return {}
    return {p.sku: p for p in await session.scalars(select(Plan).where(Plan.sku.in_(wanted)))}


async def missing_features(session: AsyncSession, keys: Iterable[str]) -> list[str]:
    """Those of ``keys`` that name no feature (deleted features count as missing)."""
    wanted = set(keys)
    if not wanted:
        return []
    found = set(
        await session.scalars(
            select(FeatureDefinition.key).where(
                FeatureDefinition.key.in_(wanted), FeatureDefinition.deleted_at.is_(None)
            )
        )
    )
    return sorted(wanted - found)


async def lapsed_memberships(session: AsyncSession, now: datetime, limit: int) -> list[tuple[int, datetime]]:
    """(user id, membership end) of accounts whose membership ended before ``now``, oldest first."""
    rows = await session.execute(
        select(QuotaAccount.user_id, QuotaAccount.membership_expires_at)
        .where(QuotaAccount.membership_expires_at.is_not(None), QuotaAccount.membership_expires_at <= now)
        .order_by(QuotaAccount.membership_expires_at, QuotaAccount.user_id)
        .limit(limit)
    )
    return [(int(r.user_id), r.membership_expires_at) for r in rows]


async def end_membership_if_unchanged(session: AsyncSession, user_id: int, expires_at: datetime) -> bool:
    """Clear the membership that ends at ``expires_at``. The condition is the claim: of two
    processes ending the same membership (or a renewal moving its end meanwhile), exactly one
    UPDATE matches, and it holds the row until its transaction ends."""
    result = await session.execute(
        update(QuotaAccount)
        .where(QuotaAccount.user_id == user_id, QuotaAccount.membership_expires_at == expires_at)
        .values(membership_sku=None, membership_expires_at=None, membership_started_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def membership_granted(session: AsyncSession, user_id: int, since: datetime, until: datetime) -> int:
    """Quota of the user's membership orders fulfilled in ``[since, until)``, less what refunds
    took back (orders snapshot what they sold, so a later edit of the plan changes nothing)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Order.quota - Order.quota_clawed), 0)).where(
            Order.user_id == user_id,
            Order.kind == PlanKind.MEMBERSHIP.value,
            Order.fulfilled_at.is_not(None),
            Order.fulfilled_at >= since,
            Order.fulfilled_at < until,
        )
    )
    return int(total or 0)


async def spent_since(session: AsyncSession, user_id: int, since: datetime) -> int:
    """Quota the user's tasks were charged since ``since`` (confirmed holds)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(-LedgerEntry.amount), 0)).where(
            LedgerEntry.user_id == user_id,
            LedgerEntry.kind == LedgerKind.CONFIRM.value,
            LedgerEntry.created_at >= since,
        )
    )
    return int(total or 0)
