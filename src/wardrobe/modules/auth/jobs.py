"""Periodic work of the auth module (run by ``worker/scheduler.py``)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.models import AuthSession, RefreshToken, SmsCode
from wardrobe.models.base import utcnow

# Kept this long after they stop mattering, for support questions and abuse investigations.
RETENTION = timedelta(days=30)


async def purge_expired_auth_data(session_factory: async_sessionmaker[AsyncSession]) -> int:
    """Delete SMS codes and refresh tokens long past expiry, and tokens of long-revoked sessions."""
    cutoff = utcnow() - RETENTION
    async with unit_of_work(session_factory) as session:
        codes = await session.execute(delete(SmsCode).where(SmsCode.expires_at < cutoff))
        revoked = select(AuthSession.id).where(AuthSession.revoked_at < cutoff).scalar_subquery()
        tokens = await session.execute(
            delete(RefreshToken).where((RefreshToken.expires_at < cutoff) | RefreshToken.session_id.in_(revoked))
        )
        return int(codes.rowcount + tokens.rowcount)  # type: ignore[attr-defined]
