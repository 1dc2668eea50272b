"""Fresh proof of identity before a sensitive change (moving the account's phone, deleting it).

An access token proves only that someone held it within the last minutes: a stolen one must not be
enough to take the account over or to destroy it. The proof is one of:

- a code sent to the account's **current** phone (the purpose names the change);
- the account's **password** (counted in the same per-account windows as a password change, so
  this is no side door for guessing);
- a fresh **WeChat code** that WeChat resolves to the account's own openid in the app it came
  from (a ``wx.login`` code in the mini program, a QR login's code on the web, the OpenSDK's in the
  mobile app): the proof of a WeChat-only account, which a thief holding only a token cannot make.
  A QR login's state is not asked for here: a code only proves something when it resolves to this
  account's own WeChat user, which a forged callback cannot arrange.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.ratelimit import parse_limits
from wardrobe.core.security import verify_password
from wardrobe.models import User, WeChatApp
from wardrobe.modules.auth import sms_codes
from wardrobe.modules.auth.parts import AccountParts
from wardrobe.modules.auth.sms_codes import CodePurpose
from wardrobe.modules.auth.wechat_errors import oauth_of, wechat_answers, wechat_of
from wardrobe.modules.users import wechat as users_wechat

# Shared with password changes: alternating the two never doubles the guesses at a password.
PASSWORD_WINDOW_KEY = "password-change"  # noqa: S105 - a rate-limit key, not a secret


@dataclass(frozen=True, slots=True)
class Proof:
    """What the caller offers; ``code_field`` names the code's field in the request (for errors)."""

    code: str | None = None
    password: str | None = None
    wechat_code: str | None = None
    code_field: str = "code"
    wechat_app: WeChatApp = WeChatApp.MINIPROGRAM


def _not_applicable(field: str, message: str) -> AppError:
    return AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": field, "message": message}])


async def check_password(parts: AccountParts, user: User, password: str) -> None:
    """The account's password, or AUTH_INVALID_CREDENTIALS; every try spends a unit of the
    account's password windows."""
    await parts.limiter.hit(parse_limits(parts.settings.login_failure_limits), PASSWORD_WINDOW_KEY, str(user.id))
    if not user.password_hash or not await verify_password(password, user.password_hash):
        raise AppError(ErrorCode.AUTH_INVALID_CREDENTIALS)


async def _check_wechat(session: AsyncSession, parts: AccountParts, user: User, proof: Proof) -> None:
    own = await users_wechat.openid_of(session, user, proof.wechat_app)
    if not own:
        raise _not_applicable("wechat_code", f"this account has never logged in through WeChat ({proof.wechat_app})")
    code = proof.wechat_code or ""
    with wechat_answers():
        if proof.wechat_app is WeChatApp.MINIPROGRAM:
            openid = (await wechat_of(parts).code2session(code)).openid
        else:
            openid = (await oauth_of(parts, proof.wechat_app).exchange_code(code)).openid
    if not secrets.compare_digest(openid, own):
        raise AppError(ErrorCode.AUTH_CODE_INVALID, detail="wechat code of another user")


async def confirm_identity(
    session: AsyncSession, parts: AccountParts, user: User, purpose: CodePurpose, proof: Proof
) -> None:
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
        await _check_wechat(session, parts, user, proof)
    else:
        raise AppError(ErrorCode.REAUTHENTICATION_REQUIRED)
