"""API keys as credentials: ``Authorization: Bearer wk_…`` acts as the key's owner, within its
scopes, on the routes that name a scope (``principal.scoped``) and nowhere else.

A key is 32 random bytes. Only its SHA-256 is stored: a slow password hash (argon2) exists to make
guessing a low-entropy secret expensive, and a 256-bit random secret cannot be guessed, so the fast
hash costs nothing in safety and keeps the lookup to one indexed read per request. That read also
decides revocation, expiry and the owner's status, so a revoked key stops on every process at its
next request; keys do not open sockets (the hub takes login tokens only).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.context import user_id_var
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.ratelimit import RateLimiter, parse_limits
from wardrobe.models import ApiKey, User, UserStatus
from wardrobe.models.base import utcnow

KEY_PREFIX = "wk_"
SCOPES = ("tasks:create", "tasks:read", "uploads:create")
SHOWN_CHARS = 8  # of the secret, after "wk_": what lists and logs show of a key
# Last use is written at most this often per key: a busy key must not write on every request.
LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: str  # shown once
    prefix: str
    secret_hash: str


def is_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret, secret[: len(KEY_PREFIX) + SHOWN_CHARS], hash_secret(secret))


async def key_owner(session: AsyncSession, limiter: RateLimiter, secret: str) -> tuple[User, ApiKey]:
    """The user a key acts as, and the key, if it is usable now; else AppError. Each use counts
    against the key's own rate limit."""
    if len(secret) > 128:
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail="unknown API key")
    found = (
        await session.execute(
            select(User, ApiKey).join(User, User.id == ApiKey.user_id).where(ApiKey.secret_hash == hash_secret(secret))
        )
    ).first()
    if found is None:
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail="unknown API key")
    user, key = found
    now = utcnow()
    if key.revoked_at is not None:
        raise AppError(ErrorCode.AUTH_SESSION_REVOKED, detail="the API key was revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail="the API key has expired")
    if user.status != UserStatus.ACTIVE.value:
        raise AppError(ErrorCode.ACCOUNT_DISABLED)
    user_id_var.set(user.id)
    await limiter.hit(parse_limits(key.rate_limit), "api-key", str(key.id))
    if key.last_used_at is None or key.last_used_at <= now - LAST_USED_EVERY:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return user, key
