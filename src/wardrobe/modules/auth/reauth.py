"""Fresh proof of identity before a sensitive change (moving the account's phone, deleting it).

An access token proves only that someone held it within the last minutes: a stolen one must not be
enough to take the account over or to destroy it. The proof is one of:

- a code sent to the account's **current** phone (the purpose names the change);
- the account's **password** (counted in the same per-account windows as a password change, so
  this is no side door for guessing);
- a fresh **``wx.login`` code** that WeChat resolves to the account's own openid: the proof of a
  WeChat-only account, which a thief holding only a token cannot make (the mini program gets one
  silently).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.ratelimit import parse_limits
from wardrobe.core.security import verify_password
from wardrobe.models import User
from wardrobe.modules.auth import sms_codes
from wardrobe.modules.auth.parts import AccountParts
from wardrobe.modules.auth.sms_codes import CodePurpose
from wardrobe.modules.auth.wechat_errors import wechat_answers, wechat_of

# Shared with password changes: alternating the two never doubles the guesses at a password.
PASSWORD_WINDOW_KEY = "password-change"  # noqa: S105 - a rate-limit key, not a secret


@dataclass(frozen=True, slots=True)
class Proof:
    """What the caller offers; ``code_field`` names the code's field in the request (for errors)."""

    code: str | None = None
    password: str | None = None
    wechat_code: str | None = None
    code_field: str = "code"


def _not_applicable(field: str, message: str) -> AppError:
    return AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": field, "message": message}])


async def check_password(parts: AccountParts, user: User, password: str) -> None:
    """The account's password, or AUTH_INVALID_CREDENTIALS; every try spends a unit of the
    account's password windows."""
    await parts.limiter.hit(parse_limits(parts.settings.login_failure_limits), PASSWORD_WINDOW_KEY, str(user.id))
    if not user.password_hash or not await verify_password(password, user.password_hash):
        raise AppError(ErrorCode.AUTH_INVALID_CREDENTIALS)


async def _check_wechat(parts: AccountParts, user: User, code: str) -> None:
    wechat = wechat_of(parts)
    with wechat_answers():
        wx = await wechat.code2session(code)
    if not secrets.compare_digest(wx.openid, user.wechat_openid or ""):
        raise AppError(ErrorCode.AUTH_CODE_INVALID, detail="wechat code of another user")


async def confirm_identity(parts: AccountParts, user: User, purpose: CodePurpose, proof: Proof) -> None:
    """Raise unless ``proof`` shows, just now, that the caller holds the account (see the module)."""
    if proof.code is not None:
        if not user.phone:
            raise _not_applicable(proof.code_field, "this account has no phone; use password or wechat_code")
        await sms_codes.verify_code(parts, phone=user.phone, purpose=purpose, code=proof.code)
    elif proof.password is not None:
        if not user.password_hash:
            raise _not_applicable("password", "this account has no password")
        await check_password(parts, user, proof.password)
    elif proof.wechat_code is not None:
        if not user.wechat_openid:
            raise _not_applicable("wechat_code", "this account is not a WeChat account")
        await _check_wechat(parts, user, proof.wechat_code)
    else:
        raise AppError(ErrorCode.REAUTHENTICATION_REQUIRED)
