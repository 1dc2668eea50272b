"""Queries on users, referrals and the audit log."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import Referral, User


async def get_by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_by_phone(session: AsyncSession, phone: str) -> User | None:
    return await session.scalar(select(User).where(User.phone == phone))


async def get_by_invite_code(session: AsyncSession, code: str) -> User | None:
    return await session.scalar(select(User).where(User.invite_code == code))


async def count_referrals(session: AsyncSession, referrer_id: int) -> int:
    stmt = select(func.count()).select_from(Referral).where(Referral.referrer_id == referrer_id)
    return int(await session.scalar(stmt) or 0)
