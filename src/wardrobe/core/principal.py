"""Who is calling: the one authentication dependency every route uses, and permission checks.

``CurrentUser`` costs one indexed query: the session row and its user. A revoked session, a
disabled account or a changed role therefore takes effect on the very next request. It sits in
``core`` beside ``SessionDep`` because every module's routes need it; logging in, tokens and
sessions themselves are the auth module's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.api_keys import SCOPES as API_KEY_SCOPES
from wardrobe.core.api_keys import is_api_key, key_owner
from wardrobe.core.context import user_id_var
from wardrobe.core.deps import LimiterDep, SessionDep, SettingsDep, TokensDep
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.permissions import Permission, has_permission, roles_with
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.core.security import AccessClaims, TokenCodec
from wardrobe.models import AuthSession, Role, User, UserStatus
from wardrobe.settings import Settings


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who is logging in or refreshing, as far as the request tells: for the owner's session list."""

    user_agent: str | None = None
    ip: str | None = None


async def load_session_and_user(session: AsyncSession, session_id: str) -> Row[User, int, datetime | None, bool] | None:
    """One query for every authenticated request: its user, the two columns of the login session
    that decide whether it is still valid, and whether it was opened with a TOTP code (no second
    entity to build)."""
    stmt = (
        select(User, AuthSession.user_id, AuthSession.revoked_at, AuthSession.mfa)
        .join(User, User.id == AuthSession.user_id)
        .where(AuthSession.id == session_id)
    )
    return (await session.execute(stmt)).first()


_bearer = HTTPBearer(auto_error=False, description="Access token from /api/v1/auth/login")


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    session_id: str
    mfa: bool = False  # the login session was opened with a TOTP code
    # Set when the caller is an API key (core/api_keys.py): what it may do as its owner.
    api_key_id: int | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def id(self) -> int:
        return self.user.id

    def can(self, permission: Permission) -> bool:
        return has_permission(self.user.role, permission)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def access_claims(tokens: TokenCodec, credentials: HTTPAuthorizationCredentials | None) -> AccessClaims:
    """The verified claims of the request's bearer token (signature, expiry, issuer, audience)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AppError(ErrorCode.AUTH_REQUIRED)
    return tokens.decode_access(credentials.credentials)


def _unknown_session() -> AppError:
    return AppError(ErrorCode.AUTH_TOKEN_INVALID, detail="unknown session")


def check_session(claims: AccessClaims, session_user_id: int | None, revoked_at: object, user_status: str) -> None:
    """The rules that make a verified token usable now, from its login session and its user:
    every authenticated path decides with this one function (``session_user_id`` None = no
    such session). The task list's SQL shortcut (tasks/listing.py ``_SESSION_VALID``) mirrors
    these rules: change both together."""
    if session_user_id is None:
        raise _unknown_session()
    if session_user_id != claims.user_id:
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID, detail="session/user mismatch")
    if revoked_at is not None:
        raise AppError(ErrorCode.AUTH_SESSION_REVOKED)
    if user_status != UserStatus.ACTIVE.value:
        raise AppError(ErrorCode.ACCOUNT_DISABLED)
    user_id_var.set(claims.user_id)


async def verified_session(session: AsyncSession, claims: AccessClaims) -> tuple[User, bool]:
    """The user behind verified ``claims`` if their login session is usable now, else AppError;
    with whether that session was opened with a TOTP code."""
    found = await load_session_and_user(session, claims.session_id)
    if found is None:
        raise _unknown_session()
    user, session_user_id, revoked_at, mfa = found
    check_session(claims, session_user_id, revoked_at, user.status)
    return user, bool(mfa)


async def verified_user(session: AsyncSession, claims: AccessClaims) -> User:
    """The user behind verified ``claims`` if their login session is usable now, else AppError."""
    user, _ = await verified_session(session, claims)
    return user


async def get_principal(tokens: TokensDep, session: SessionDep, credentials: BearerDep) -> Principal:
    if credentials is not None and is_api_key(credentials.credentials):
        raise AppError(ErrorCode.PERMISSION_DENIED, detail="this route takes a login, not an API key")
    claims = access_claims(tokens, credentials)
    user, mfa = await verified_session(session, claims)
    return Principal(user=user, session_id=claims.session_id, mfa=mfa)


CurrentUser = Annotated[Principal, Depends(get_principal)]


async def key_principal(session: AsyncSession, limiter: RateLimiter, secret: str, scope: str) -> Principal:
    """The owner of an API key that holds ``scope``, as the caller; else AppError."""
    user, key = await key_owner(session, limiter, secret)
    if scope not in key.scopes:
        raise AppError(ErrorCode.PERMISSION_DENIED, detail=f"the API key lacks the scope {scope}")
    return Principal(user=user, session_id="", api_key_id=key.id, scopes=frozenset(key.scopes))


def scoped(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency for the routes a business customer's systems call: a login, as ``CurrentUser``,
    or an API key that holds ``scope`` (acting as its owner)."""
    if scope not in API_KEY_SCOPES:
        raise ValueError(f"unknown API key scope {scope!r}")

    async def check(tokens: TokensDep, session: SessionDep, credentials: BearerDep, limiter: LimiterDep) -> Principal:
        if credentials is None or not is_api_key(credentials.credentials):
            return await get_principal(tokens, session, credentials)
        return await key_principal(session, limiter, credentials.credentials, scope)

    check.__name__ = f"scoped_{scope.replace(':', '_')}"
    setattr(check, "scope", scope)  # noqa: B010 - read by core/contract.py, which documents it
    return check


def is_staff_permission(permission: Permission) -> bool:
    """A permission a plain user does not hold: what staff routes (the admin API) ask for."""
    return not has_permission(Role.USER.value, permission)


def second_factor_missing(role: str, mfa: bool, settings: Settings, permission: Permission) -> bool:
    """Whether ``check_second_factor`` refuses this role and session (also asked by the socket hub,
    whose staff subscriptions follow the same rule as the staff routes)."""
    return settings.admin_totp_enforced and role == Role.ADMIN.value and not mfa and is_staff_permission(permission)


def check_second_factor(principal: Principal, settings: Settings, permission: Permission) -> None:
    """Where ``WARDROBE_ADMIN_TOTP_REQUIRED`` holds (production by default), an admin reaches a
    staff route only from a session opened with a TOTP code: an admin's password alone must not
    open the whole business. Operators are not held to it, and routes a plain user may call (the
    TOTP routes, /users/me) stay open, so an admin without TOTP can enrol. Call it after the
    permission check, wherever a route admits staff without ``require`` (it is the one rule)."""
    if second_factor_missing(principal.user.role, principal.mfa, settings, permission):
        raise AppError(ErrorCode.TOTP_ENROLMENT_REQUIRED)


def require(permission: Permission) -> Callable[[Principal, Settings], Awaitable[Principal]]:
    """A dependency that admits only principals whose role grants ``permission`` (and, for
    admins on staff routes, whose session passes ``check_second_factor``)."""

    async def check(principal: CurrentUser, settings: SettingsDep) -> Principal:
        if not principal.can(permission):
            raise AppError(ErrorCode.PERMISSION_DENIED)
        check_second_factor(principal, settings, permission)
        return principal

    check.__name__ = f"require_{permission.value.replace(':', '_')}"
    # Read by core/contract.py, which documents the permission on every route that asks for it.
    setattr(check, "permission", permission.value)  # noqa: B010 - an attribute of a function object
    setattr(check, "roles", roles_with(permission))  # noqa: B010 - an attribute of a function object
    return check


def client_ip(request: Request) -> str:
    # uvicorn/gunicorn rewrite scope["client"] from X-Forwarded-For only for trusted proxies
    # (--forwarded-allow-ips), so this is never taken from a header a client can forge.
    return request.client.host if request.client else "unknown"


def client_info(request: Request) -> ClientInfo:
    return ClientInfo(user_agent=request.headers.get("user-agent"), ip=client_ip(request))


# The routes an API key may reach, each with the scope it needs.
TaskCreator = Annotated[Principal, Depends(scoped("tasks:create"))]
TaskReader = Annotated[Principal, Depends(scoped("tasks:read"))]
Uploader = Annotated[Principal, Depends(scoped("uploads:create"))]
