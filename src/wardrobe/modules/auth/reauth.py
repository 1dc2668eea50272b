"""Fresh proof of identity before a sensitive change (moving the account's phone, deleting it).

An access token proves only that someone held it within the last minutes: a stolen one must not be
enough to take the account over or to destroy it. The proof is one of:

- a code sent to the account's **current** phone (the purpose names the change);
- the account's **password** (counted in the same per-account windows as a password change, so
  this is no side door for guessing);
- for an account that has neither (WeChat only), a **login this recent**
  (``WARDROBE_REAUTH_WINDOW_SECONDS``): the mini program logs in again silently with ``wx.login``,
  which a thief holding only a token cannot do.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.infra import Infra
from wardrobe.core.ratelimit import parse_limits
from wardrobe.core.security import verify_password
from wardrobe.models import AuthSession, User
from wardrobe.models.base import utcnow
from wardrobe.modules.auth import sms_codes
from wardrobe.modules.auth.sms_codes import CodePurpose


async def check_password(infra: Infra, user: User, password: str) -> None:
    """The account's password, or AUTH_INVALID_CREDENTIALS; every try spends a unit of the
    account's password windows (shared with password changes)."""
    await infra.limiter.hit(parse_limits(infra.settings.login_failure_limits), "password-change", str(user.id))
    if not user.password_hash or not await verify_password(password, user.password_hash):
        raise AppError(ErrorCode.AUTH_INVALID_CREDENTIALS)


async def _logged_in_recently(session: AsyncSession, infra: Infra, session_id: str) -> bool:
    created = await session.scalar(select(AuthSession.created_at).where(AuthSession.id == session_id))
    window = timedelta(seconds=infra.settings.reauth_window_seconds)
    return created is not None and utcnow() - created <= window


async def confirm_identity(
    session: AsyncSession,
    infra: Infra,
    user: User,
    *,
    session_id: str,
    purpose: CodePurpose,
    code: str | None,
    password: str | None,
) -> None:
    """Raise unless the caller proved, just now, to be the account's owner (see the module)."""
    if code is not None:
        if user.phone is None:
            raise AppError(ErrorCode.AUTH_CODE_INVALID)
        await sms_codes.verify_code(infra, phone=user.phone, purpose=purpose, code=code)
        return
    if password is not None:
        await check_password(infra, user, password)
        return
    if user.phone is None and not user.password_hash and await _logged_in_recently(session, infra, session_id):
        return
    raise AppError(ErrorCode.REAUTHENTICATION_REQUIRED)
