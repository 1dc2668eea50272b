"""Login sessions and the dual tokens: rotation, reuse detection, immediate revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import AUTH_EVENTS
from wardrobe.core.outbox import announce
from wardrobe.core.principal import ClientInfo
from wardrobe.core.security import hash_token, new_refresh_token, new_session_id
from wardrobe.models import AuthSession, RefreshToken, User
from wardrobe.models.base import utcnow
from wardrobe.modules.auth import repository
from wardrobe.modules.auth.devices import device_label, mask_ip
from wardrobe.modules.auth.parts import AccountParts

log = get_logger("wardrobe.auth.tokens")
# Outbox topic of ended sessions: every process drops the sockets that belong to them.
TOPIC_SESSIONS_REVOKED = "sessions.revoked"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    session_id: str


async def _issue_refresh(session: AsyncSession, parts: AccountParts, session_id: str) -> str:
    token = new_refresh_token()
    session.add(
        RefreshToken(
            session_id=session_id,
            token_hash=hash_token(token),
            expires_at=utcnow() + timedelta(seconds=parts.settings.refresh_token_ttl_seconds),
        )
    )
    await session.flush()
    return token


def _pair(parts: AccountParts, user: User, session_id: str, refresh: str) -> TokenPair:
    access = parts.tokens.issue_access(user.id, user.role, session_id)
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_in=parts.settings.access_token_ttl_seconds,
        refresh_expires_in=parts.settings.refresh_token_ttl_seconds,
        session_id=session_id,
    )


async def start_session(
    session: AsyncSession, parts: AccountParts, user: User, *, method: str, client: ClientInfo, mfa: bool = False
) -> TokenPair:
    """A new login: a session (the token family) and its first refresh token. ``mfa``: it was
    opened with a TOTP code (kept on the session, so refreshed tokens keep it)."""
    session_id = new_session_id()
    session.add(
        AuthSession(
            id=session_id,
            user_id=user.id,
            method=method,
            mfa=mfa,
            client=(client.user_agent or "")[:128] or None,
            device=device_label(client.user_agent),
            ip_masked=mask_ip(client.ip),
        )
    )
    await session.flush()
    refresh = await _issue_refresh(session, parts, session_id)
    return _pair(parts, user, session_id, refresh)


def session_deadline(parts: AccountParts, auth_session: AuthSession) -> datetime:
    """When a session ends however often it refreshes (``WARDROBE_SESSION_MAX_DAYS`` after login)."""
    return auth_session.created_at + timedelta(days=parts.settings.session_max_days)


async def rotate(
    session: AsyncSession, parts: AccountParts, refresh_token: str, client: ClientInfo | None = None
) -> TokenPair:
    """Exchange a refresh token for a new pair. A token already used means it was stolen or
    replayed: the whole family is revoked, so neither the thief nor the owner keeps it. A session
    idle for longer than a refresh token lives, or older than its absolute lifetime, is over."""
    found = await repository.find_refresh_token(session, hash_token(refresh_token))
    if found is None:
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail="unknown refresh token")
    token, auth_session = found
    if auth_session.revoked_at is not None:
        raise AppError(ErrorCode.AUTH_SESSION_REVOKED)
    now = utcnow()
    if token.expires_at <= now or session_deadline(parts, auth_session) <= now:
        AUTH_EVENTS.labels("refresh", "expired").inc()
        raise AppError(ErrorCode.AUTH_SESSION_EXPIRED)
    if token.used_at is not None or not await _claim(parts, token.id):
        await _revoke_family_now(parts, auth_session.id)
        AUTH_EVENTS.labels("refresh", "reused").inc()
        raise AppError(ErrorCode.AUTH_REFRESH_REUSED)
    user = await session.get(User, auth_session.user_id)
    if user is None or not user.is_active:
        raise AppError(ErrorCode.AUTH_SESSION_REVOKED)
    auth_session.last_refreshed_at = now
    if client is not None and client.ip:
        auth_session.ip_masked = mask_ip(client.ip)
    refresh = await _issue_refresh(session, parts, auth_session.id)
    AUTH_EVENTS.labels("refresh", "ok").inc()
    return _pair(parts, user, auth_session.id, refresh)


async def _claim(parts: AccountParts, token_id: int) -> bool:
    # The claim commits on its own, before this request writes anything: exactly one of any
    # number of racing requests wins it, and the losers can then revoke the family without
    # waiting on a lock their own request holds (SQLite has a single writer).
    async with unit_of_work(parts.session_factory) as session:
        return await repository.mark_refresh_used(session, token_id, utcnow())


async def _revoke_family_now(parts: AccountParts, session_id: str) -> None:
    # Its own transaction: the request that detected the reuse fails and rolls back, but the
    # revocation must stand.
    async with unit_of_work(parts.session_factory) as session:
        if await repository.revoke_session(session, session_id, "refresh_reused", utcnow()):
            user_id = await repository.session_owner(session, session_id)
            if user_id is not None:
                announce(session, TOPIC_SESSIONS_REVOKED, {"user_id": user_id, "session_id": session_id})
    log.warning("refresh_token_reused", session_id=session_id)


async def revoke(session: AsyncSession, user_id: int, session_id: str, reason: str) -> bool:
    """End one login session of ``user_id``; its sockets are dropped once this commits."""
    revoked = await repository.revoke_session(session, session_id, reason, utcnow(), user_id=user_id)
    if revoked:
        announce(session, TOPIC_SESSIONS_REVOKED, {"user_id": user_id, "session_id": session_id})
    return revoked


async def revoke_all(session: AsyncSession, user_id: int, reason: str, keep_session_id: str | None = None) -> int:
    """End every login session of ``user_id`` but ``keep_session_id``; their sockets are dropped
    once this commits (announced even when no row changed: a socket may outlive its session's row
    being revoked by a racing request)."""
    revoked = await repository.revoke_user_sessions(session, user_id, reason, utcnow(), keep_session_id)
    announce(session, TOPIC_SESSIONS_REVOKED, {"user_id": user_id, "keep_session_id": keep_session_id})
    return revoked


async def list_live(
    session: AsyncSession, parts: AccountParts, user_id: int
) -> list[tuple[AuthSession, datetime, datetime]]:
    """The user's live sessions, each with when it was last used and when it ends at the latest."""
    now = utcnow()
    found = await repository.live_sessions(
        session,
        user_id,
        born_after=now - timedelta(days=parts.settings.session_max_days),
        used_after=now - timedelta(seconds=parts.settings.refresh_token_ttl_seconds),
    )
    return [(s, s.last_refreshed_at or s.created_at, session_deadline(parts, s)) for s in found]
