"""Queries on sessions, refresh tokens and SMS codes. Conditional updates carry the races."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import AuthSession, RefreshToken, SmsCode

MAX_LISTED_SESSIONS = 100  # far more than anyone has; a bound all the same


async def find_refresh_token(session: AsyncSession, token_hash: str) -> Row[RefreshToken, AuthSession] | None:
    stmt = (
        select(RefreshToken, AuthSession)
        .join(AuthSession, AuthSession.id == RefreshToken.session_id)
        .where(RefreshToken.token_hash == token_hash)
    )
    return (await session.execute(stmt)).first()


async def mark_refresh_used(session: AsyncSession, token_id: int, now: datetime) -> bool:
    """True for exactly one caller per token, however many race."""
    result = await session.execute(
        update(RefreshToken).where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None)).values(used_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def revoke_session(
    session: AsyncSession, session_id: str, reason: str, now: datetime, *, user_id: int | None = None
) -> bool:
    """Revoke one live session (only if it belongs to ``user_id``, when given)."""
    stmt = (
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=reason)
    )
    if user_id is not None:
        stmt = stmt.where(AuthSession.user_id == user_id)
    result = await session.execute(stmt)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def session_owner(session: AsyncSession, session_id: str) -> int | None:
    owner: int | None = await session.scalar(select(AuthSession.user_id).where(AuthSession.id == session_id))
    return owner


async def revoke_user_sessions(
    session: AsyncSession, user_id: int, reason: str, now: datetime, keep_session_id: str | None = None
) -> int:
    stmt = (
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=reason)
    )
    if keep_session_id is not None:
        stmt = stmt.where(AuthSession.id != keep_session_id)
    result = await session.execute(stmt)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def latest_live_code(session: AsyncSession, phone: str, purpose: str, now: datetime) -> SmsCode | None:
    stmt = (
        select(SmsCode)
        .where(
            SmsCode.phone == phone,
            SmsCode.purpose == purpose,
            SmsCode.consumed_at.is_(None),
            SmsCode.expires_at > now,
        )
        .order_by(SmsCode.id.desc())
        .limit(1)
    )
    return await session.scalar(stmt)


async def supersede_codes(session: AsyncSession, phone: str, purpose: str, now: datetime) -> None:
    """Only the newest code works: older unused ones are retired when a new one is sent."""
    await session.execute(
        update(SmsCode)
        .where(SmsCode.phone == phone, SmsCode.purpose == purpose, SmsCode.consumed_at.is_(None))
        .values(consumed_at=now)
    )


async def count_attempt(session: AsyncSession, code_id: int, max_attempts: int) -> bool:
    """Spend one attempt; False when none is left. Atomic, so racing guesses cannot exceed the cap."""
    result = await session.execute(
        update(SmsCode)
        .where(SmsCode.id == code_id, SmsCode.attempts < max_attempts, SmsCode.consumed_at.is_(None))
        .values(attempts=SmsCode.attempts + 1)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def consume_code(session: AsyncSession, code_id: int, now: datetime) -> bool:
    result = await session.execute(
        update(SmsCode).where(SmsCode.id == code_id, SmsCode.consumed_at.is_(None)).values(consumed_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def live_sessions(
    session: AsyncSession, user_id: int, *, born_after: datetime, used_after: datetime
) -> list[AuthSession]:
    """A user's sessions that can still refresh: not revoked, within their absolute lifetime, and
    used (logged in or refreshed) recently enough that their refresh token has not run out.
    Newest first; a user has few (each login is one)."""
    last_used = func.coalesce(AuthSession.last_refreshed_at, AuthSession.created_at)
    stmt = (
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.created_at > born_after,
            last_used > used_after,
        )
        .order_by(last_used.desc(), AuthSession.id)
        .limit(MAX_LISTED_SESSIONS)
    )
    return list(await session.scalars(stmt))


async def recent_sessions(session: AsyncSession, user_id: int, *, limit: int) -> list[AuthSession]:
    """A user's newest sessions, ended ones included (what support looks at), newest first."""
    stmt = (
        select(AuthSession)
        .where(AuthSession.user_id == user_id)
        .order_by(AuthSession.created_at.desc(), AuthSession.id)
        .limit(limit)
    )
    return list(await session.scalars(stmt))
