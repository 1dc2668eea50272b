"""Queries on sessions, refresh tokens, SMS codes and TOTP secrets. Conditional updates carry the
races."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import AuthSession, RefreshToken, SmsCode, User, UserTotp
from wardrobe.models.base import utcnow
from wardrobe.modules.crypto.envelope import SealedValue

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


async def store_pending_totp(session: AsyncSession, user_id: int, sealed: SealedValue) -> bool:
    """Keep ``sealed`` as the user's TOTP secret, pending, replacing a pending one. False when the
    user's TOTP is in force (it is never replaced: disable it first) or a racing setup won."""
    values = {
        "secret_wrapped_key": sealed.wrapped_key,
        "secret_key_ref": sealed.key_ref,
        "secret_nonce": sealed.nonce,
        "secret_ciphertext": sealed.ciphertext,
        "last_step": None,
        "created_at": utcnow(),
    }
    not_in_force = select(User.id).where(User.id == user_id, User.totp_enabled_at.is_(None))
    result = await session.execute(
        update(UserTotp)
        .where(UserTotp.user_id == user_id, UserTotp.user_id.in_(not_in_force))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return True
    try:
        async with session.begin_nested():
            session.add(UserTotp(user_id=user_id, **values))
            await session.flush()
    except IntegrityError:
        return False  # a row exists after all: TOTP in force, or another setup inserted first
    return True


async def totp_secret(session: AsyncSession, user_id: int) -> UserTotp | None:
    found: UserTotp | None = await session.scalar(
        select(UserTotp).where(UserTotp.user_id == user_id).execution_options(populate_existing=True)
    )
    return found


async def advance_totp_step(session: AsyncSession, user_id: int, wrapped_key: str, step: int) -> bool:
    """Accept a code of time step ``step`` once: true for exactly one caller, and only when the
    step is later than every one accepted before (a replay within the code's window, or a racing
    request with the same code, gets false) and the secret is still the one the code was checked
    against (a setup may have replaced it meanwhile)."""
    result = await session.execute(
        update(UserTotp)
        .where(
            UserTotp.user_id == user_id,
            UserTotp.secret_wrapped_key == wrapped_key,
            (UserTotp.last_step.is_(None)) | (UserTotp.last_step < step),
        )
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def put_totp_in_force(session: AsyncSession, user_id: int, now: datetime) -> bool:
    result = await session.execute(
        update(User).where(User.id == user_id, User.totp_enabled_at.is_(None)).values(totp_enabled_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def remove_totp(session: AsyncSession, user_id: int) -> bool:
    """End the user's TOTP and forget its secret (pending or in force). True when it was in force."""
    result = await session.execute(
        update(User).where(User.id == user_id, User.totp_enabled_at.is_not(None)).values(totp_enabled_at=None)
    )
    await session.execute(delete(UserTotp).where(UserTotp.user_id == user_id))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def set_session_mfa(session: AsyncSession, session_id: str, mfa: bool) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id)
        .values(mfa=mfa)
        .execution_options(synchronize_session=False)
    )


async def recent_sessions(session: AsyncSession, user_id: int, *, limit: int) -> list[AuthSession]:
    """A user's newest sessions, ended ones included (what support looks at), newest first."""
    stmt = (
        select(AuthSession)
        .where(AuthSession.user_id == user_id)
        .order_by(AuthSession.created_at.desc(), AuthSession.id)
        .limit(limit)
    )
    return list(await session.scalars(stmt))
