"""Passwords (argon2id), access JWTs (HS256 pinned) and opaque refresh tokens."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from wardrobe.core.errors import AppError, ErrorCode

JWT_ALGORITHM = "HS256"  # pinned: decode accepts this one algorithm only, never "none"
_REQUIRED_CLAIMS = ["sub", "role", "sid", "jti", "iat", "exp", "iss", "aud", "typ"]

_password_hash = PasswordHash((Argon2Hasher(),))
# Verified against when the account does not exist, so a wrong phone costs the same time as a
# wrong password and timing does not reveal which phones are registered.
_DUMMY_HASH = _password_hash.hash("wardrobe-timing-equaliser")


def hash_password_sync(password: str) -> str:
    return _password_hash.hash(password)


def verify_password_sync(password: str, password_hash: str | None) -> bool:
    if not password_hash:
        _password_hash.verify(password, _DUMMY_HASH)
        return False
    try:
        return bool(_password_hash.verify(password, password_hash))
    except Exception:  # a corrupt stored hash is a failed login, not a 500
        return False


# Argon2id costs tens of milliseconds of CPU by design; argon2-cffi releases the GIL, so a thread
# keeps the event loop serving other requests meanwhile.
async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    return await asyncio.to_thread(verify_password_sync, password, password_hash)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    role: str
    session_id: str
    jti: str
    expires_at: int


# Access tokens already verified, by their exact text. A client sends the same token for minutes,
# and PyJWT's HS256 check with its claim validation costs ~0.1 ms each time, twice per request (the
# edge limits and the route): a quarter of the task list's CPU. A hit skips only the signature and
# claim checks that this exact text already passed; its expiry is checked again on every hit, and
# revocation is never cached (the login session is read on every request). Oldest out first.
VERIFIED_TOKENS_KEPT = 10_000


def key_id(secret: str) -> str:
    """Names a signing key in the token header without revealing it: the first 8 bytes of its
    SHA-256 (a 64-bit prefix of a hash of a 32+ character secret gives nothing to guess from)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class TokenCodec:
    """Signs and checks access tokens with the issuer, audience and algorithm pinned.

    Signs with ``secret``; also accepts tokens signed with one of ``previous`` (a key rotation: the
    tokens already out stay valid until they expire, at most one access-token lifetime). Each token
    names its key (``kid``), so checking costs one HMAC whatever the number of keys; a token with no
    ``kid`` was signed before key ids existed, by the current secret."""

    def __init__(self, secret: str, issuer: str, audience: str, ttl_seconds: int, previous: Sequence[str] = ()) -> None:
        self._secret = secret
        self._kid = key_id(secret)
        self._keys = {key_id(old): old for old in previous if old and old != secret}
        self._keys[self._kid] = secret
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, AccessClaims] = {}

    def issue_access(self, user_id: int, role: str, session_id: str, now: float | None = None) -> str:
        iat = int(now if now is not None else time.time())
        payload: dict[str, Any] = {
            "sub": str(user_id),
            "role": role,
            "sid": session_id,
            "jti": uuid.uuid4().hex,
            "iat": iat,
            "exp": iat + self.ttl_seconds,
            "iss": self.issuer,
            "aud": self.audience,
            "typ": "access",
        }
        return jwt.encode(payload, self._secret, algorithm=JWT_ALGORITHM, headers={"kid": self._kid})

    def decode_access(self, token: str) -> AccessClaims:
        """The claims of a valid access token, else ``AppError`` (expired or invalid)."""
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at > time.time():  # PyJWT's rule: expired once exp <= now
                return known
            del self._verified[token]
            raise AppError(ErrorCode.AUTH_TOKEN_EXPIRED)
        claims = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        return claims

    def _key_of(self, token: str) -> str:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail=type(exc).__name__) from exc
        if kid is None:
            return self._secret
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:  # a retired key, or a forged header
            raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail="unknown key")
        return key

    def _verify(self, token: str) -> AccessClaims:
        key = self._key_of(token)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[JWT_ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AppError(ErrorCode.AUTH_TOKEN_EXPIRED) from exc
        except jwt.PyJWTError as exc:
            raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail=type(exc).__name__) from exc
        if payload.get("typ") != "access":
            raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail="not an access token")
        try:
            user_id = int(payload["sub"])
        except (TypeError, ValueError) as exc:
            raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail="bad sub") from exc
        return AccessClaims(
            user_id=user_id,
            role=str(payload["role"]),
            session_id=str(payload["sid"]),
            jti=str(payload["jti"]),
            expires_at=int(payload["exp"]),
        )


def new_refresh_token() -> str:
    """An opaque 256-bit token; only its SHA-256 is stored."""
    return "rt_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # A plain SHA-256 is right for 256-bit random tokens: no dictionary to guard against.
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_id() -> str:
    return uuid.uuid4().hex


def hash_code(pepper: str, *parts: str) -> str:
    """Keyed hash of a short code bound to its context (phone, purpose).

    Six digits have only a million values, so the attempt cap is what stops guessing; the pepper
    keeps a leaked table from being reversed offline.
    """
    message = "\x1f".join(parts).encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_numeric_code(digits: int = 6) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))
