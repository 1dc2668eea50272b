"""HTTP routes of /api/v1/auth (api.md "Auth")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.deps import SessionDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.principal import BearerDep, CurrentUser, client_info, client_ip, get_principal
from wardrobe.models import WeChatApp
from wardrobe.modules.auth import service, sms_codes, tokens
from wardrobe.modules.auth.parts import AccountParts, AccountPartsDep
from wardrobe.modules.auth.schemas import (
    DeviceIdHeader,
    LoggedOut,
    LoginRequest,
    LoginResponse,
    PasswordChange,
    PasswordChanged,
    PasswordLogin,
    PasswordReset,
    PhoneBindSms,
    PhoneBindWeChat,
    RefreshRequest,
    SessionOut,
    SmsCodeRequest,
    SmsCodeSent,
    SmsLogin,
    TokenResponse,
    WeChatWebLogin,
)
from wardrobe.modules.auth.sms_codes import ACCOUNT_PURPOSES
from wardrobe.modules.auth.tokens import TokenPair
from wardrobe.modules.crypto.deps import CipherDep
from wardrobe.modules.users.schemas import UserOut

_WECHAT_APPS = {"wechat": WeChatApp.MINIPROGRAM, "wechat_web": WeChatApp.WEB, "wechat_app": WeChatApp.MOBILE}

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
# Session ids are 32 hex characters (core/security.py new_session_id).
SessionIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", examples=["3f0c9a1e5b7d4c2a8e6f1b0d9c7a5e3f"])]


def _token_body(pair: TokenPair) -> dict[str, object]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
        "refresh_expires_in": pair.refresh_expires_in,
    }


@router.post(
    "/sms-codes",
    summary="Send an SMS verification code",
    description="Same answer whether or not the phone is registered. 60 s cooldown and daily caps "
    "per phone and per IP; `debug_code` only with the development console sender. With captcha on, "
    "once a risk rule (per address, phone prefix or `X-Device-Id`) trips, the answer is 403 "
    "`CAPTCHA_REQUIRED` (`data.captcha_app_id`): show the Tencent Captcha and send again with "
    "`captcha: {ticket, randstr}`; a ticket that fails (wrong, expired, used) is 400 `CAPTCHA_INVALID`. "
    "A refused request uses up nothing of the phone's cooldown or daily sends.",
    response_model=Envelope[SmsCodeSent],
    responses=errors(
        ErrorCode.RATE_LIMITED,
        ErrorCode.CAPTCHA_REQUIRED,
        ErrorCode.CAPTCHA_INVALID,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
    # The token is needed only for the purposes whose code goes to the account's own phone.
    openapi_extra={"security": [{}, {"HTTPBearer": []}]},
)
async def send_sms_code(
    body: SmsCodeRequest,
    request: Request,
    parts: AccountPartsDep,
    session: SessionDep,
    credentials: BearerDep,
    device_id: DeviceIdHeader = None,
) -> OrjsonResponse:
    phone = await _code_recipient(body, parts, session, credentials)
    sent = await sms_codes.send_code(
        session,
        parts,
        phone=phone,
        purpose=body.purpose,
        client_ip=client_ip(request),
        device_id=device_id,
        captcha=body.captcha,
    )
    data: dict[str, object] = {"cooldown_seconds": sent.cooldown_seconds}
    if sent.debug_code is not None:
        data["debug_code"] = sent.debug_code
    return ok(data)


async def _code_recipient(
    body: SmsCodeRequest, parts: AccountParts, session: AsyncSession, credentials: HTTPAuthorizationCredentials | None
) -> str:
    """The number a code goes to: the one named, or for proofs of ownership the account's own."""
    if body.purpose not in ACCOUNT_PURPOSES:
        if body.phone is None:
            raise AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": "phone", "message": "is required"}])
        return body.phone
    principal = await get_principal(parts.tokens, session, credentials)
    own = principal.user.phone
    if own is None:
        raise AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": "phone", "message": "the account has no phone"}])
    if body.phone is not None and body.phone != own:
        message = "must be the account's own phone"
        raise AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": "phone", "message": message}])
    return own


@router.post(
    "/login",
    summary="Log in (SMS code, password or WeChat); SMS and WeChat register new users",
    description="WeChat logs in from the mini program (`wechat`, a `wx.login` code), the web "
    "(`wechat_web`, the code and state of a QR login) or the mobile app (`wechat_app`); one person is one "
    "account on all three when their WeChat apps share an Open Platform account (the unionid). "
    "An account with TOTP enabled also sends `totp_code`, the authenticator app's current "
    "code: without it the answer is 401 `TOTP_REQUIRED` (the first factor was right: ask for the code and "
    "send the whole login again), with a wrong or already used one 401 `TOTP_INVALID`. Each code works "
    "once; wrong codes count against the same back-off as wrong passwords.",
    response_model=Envelope[LoginResponse],
    responses=errors(
        ErrorCode.AUTH_CODE_INVALID,
        ErrorCode.AUTH_INVALID_CREDENTIALS,
        ErrorCode.TOTP_REQUIRED,
        ErrorCode.TOTP_INVALID,
        ErrorCode.INVITE_CODE_INVALID,
        ErrorCode.ACCOUNT_DISABLED,
        ErrorCode.FEATURE_UNAVAILABLE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)
async def login(
    request: Request,
    parts: AccountPartsDep,
    session: SessionDep,
    cipher: CipherDep,
    body: Annotated[LoginRequest, Body()],
) -> OrjsonResponse:
    client = client_info(request)
    if isinstance(body, SmsLogin):
        result = await service.login_with_sms(
            session,
            parts,
            cipher,
            phone=body.phone,
            code=body.code,
            invite_code=body.invite_code,
            client=client,
            totp_code=body.totp_code,
        )
    elif isinstance(body, PasswordLogin):
        result = await service.login_with_password(
            session, parts, cipher, phone=body.phone, password=body.password, client=client, totp_code=body.totp_code
        )
    else:
        app = _WECHAT_APPS[body.method]
        result = await service.login_with_wechat(
            session,
            parts,
            cipher,
            app=app,
            code=body.code,
            state=body.state if isinstance(body, WeChatWebLogin) else None,
            invite_code=body.invite_code,
            client=client,
            totp_code=body.totp_code,
        )
    data = _token_body(result.tokens)
    data["is_new_user"] = result.is_new_user
    data["user"] = UserOut.of(result.user).model_dump(mode="json")
    return ok(data)


@router.post(
    "/refresh",
    summary="Rotate a refresh token into a new pair",
    description="Each refresh token works once. Presenting a used one revokes the whole session.",
    response_model=Envelope[TokenResponse],
    responses=errors(
        ErrorCode.AUTH_TOKEN_INVALID,
        ErrorCode.AUTH_SESSION_EXPIRED,
        ErrorCode.AUTH_SESSION_REVOKED,
        ErrorCode.AUTH_REFRESH_REUSED,
    ),
)
async def refresh(
    body: RefreshRequest, request: Request, parts: AccountPartsDep, session: SessionDep
) -> OrjsonResponse:
    pair = await tokens.rotate(session, parts, body.refresh_token, client_info(request))
    return ok(_token_body(pair))


@router.post(
    "/logout",
    summary="Log out this session",
    response_model=Envelope[LoggedOut],
    responses=errors(*AUTH_ERRORS),
)
async def logout(principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    revoked = await tokens.revoke(session, principal.id, principal.session_id, "logout")
    return ok({"sessions_revoked": int(revoked)})


@router.post(
    "/logout-all",
    summary="Log out every session of this account",
    response_model=Envelope[LoggedOut],
    responses=errors(*AUTH_ERRORS),
)
async def logout_all(principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    revoked = await tokens.revoke_all(session, principal.id, "logout_all")
    return ok({"sessions_revoked": revoked})


@router.get(
    "/sessions",
    summary="List this account's live login sessions (devices), newest use first",
    description="Each login on each device is a session. `current` marks the one making this request.",
    response_model=Envelope[list[SessionOut]],
    responses=errors(*AUTH_ERRORS),
)
async def list_sessions(principal: CurrentUser, parts: AccountPartsDep, session: SessionDep) -> OrjsonResponse:
    found = await tokens.list_live(session, parts, principal.id)
    items = [
        SessionOut(
            id=s.id,
            device=s.device,
            client=s.client,
            method=s.method,
            ip_masked=s.ip_masked,
            created_at=s.created_at,
            last_used_at=last_used,
            expires_at=ends,
            current=s.id == principal.session_id,
            mfa=s.mfa,
        ).model_dump(mode="json")
        for s, last_used, ends in found
    ]
    return ok(items)


@router.delete(
    "/sessions/{session_id}",
    summary="End one of this account's sessions (log a device out)",
    description="Its tokens stop working and its sockets close at once. Ending the current session is "
    "a logout. Another account's session, or one already ended, is 404.",
    response_model=Envelope[LoggedOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def end_session(session_id: SessionIdPath, principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    if not await tokens.revoke(session, principal.id, session_id, "ended_by_owner"):
        raise AppError(ErrorCode.NOT_FOUND)
    return ok({"sessions_revoked": 1})


@router.post(
    "/password/reset",
    summary="Reset a forgotten password with an SMS code (purpose reset_password)",
    description="Revokes every session of the account.",
    response_model=Envelope[None],
    responses=errors(ErrorCode.AUTH_CODE_INVALID, ErrorCode.ACCOUNT_DISABLED),
)
async def reset_password(body: PasswordReset, parts: AccountPartsDep, session: SessionDep) -> OrjsonResponse:
    await service.reset_password(session, parts, phone=body.phone, code=body.code, new_password=body.new_password)
    return ok(None)


@router.put(
    "/password",
    summary="Set or change the password",
    description="`old_password` is required when a password is already set. Every other session is revoked.",
    response_model=Envelope[PasswordChanged],
    responses=errors(*AUTH_ERRORS, ErrorCode.AUTH_INVALID_CREDENTIALS, ErrorCode.RATE_LIMITED),
)
async def change_password(
    body: PasswordChange, principal: CurrentUser, parts: AccountPartsDep, session: SessionDep
) -> OrjsonResponse:
    revoked = await service.change_password(
        session,
        parts,
        principal.user,
        old_password=body.old_password,
        new_password=body.new_password,
        current_session_id=principal.session_id,
    )
    return ok({"other_sessions_revoked": revoked})


@router.put(
    "/phone",
    summary="Bind or change the phone number with an SMS code (purpose bind_phone)",
    description="Also prove that the account is yours, with one of: `current_code` (a code sent to the "
    "current phone, purpose `change_phone`), `password`, or `wechat_code` (a fresh `wx.login` code; what a "
    "WeChat-only account has). Without one: `REAUTHENTICATION_REQUIRED`. When a phone is replaced, every "
    "other session ends and the old number gets a notice.",
    response_model=Envelope[UserOut],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.AUTH_CODE_INVALID,
        ErrorCode.AUTH_INVALID_CREDENTIALS,
        ErrorCode.REAUTHENTICATION_REQUIRED,
        ErrorCode.PHONE_ALREADY_BOUND,
        ErrorCode.RATE_LIMITED,
    ),
)
async def bind_phone_sms(
    body: PhoneBindSms, principal: CurrentUser, parts: AccountPartsDep, session: SessionDep
) -> OrjsonResponse:
    user = await service.bind_phone_with_sms(
        session, parts, principal.user, body.phone, body.code, body.proof(), principal.session_id
    )
    return ok(UserOut.of(user).model_dump(mode="json"))


@router.post(
    "/wechat/phone",
    summary="Bind the phone number from WeChat getPhoneNumber",
    description="The same proof as `PUT /api/v1/auth/phone` (a WeChat user sends `wechat_code`).",
    response_model=Envelope[UserOut],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.AUTH_CODE_INVALID,
        ErrorCode.AUTH_INVALID_CREDENTIALS,
        ErrorCode.REAUTHENTICATION_REQUIRED,
        ErrorCode.PHONE_ALREADY_BOUND,
        ErrorCode.FEATURE_UNAVAILABLE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)
async def bind_phone_wechat(
    body: PhoneBindWeChat, principal: CurrentUser, parts: AccountPartsDep, session: SessionDep
) -> OrjsonResponse:
    user = await service.bind_phone_with_wechat(
        session, parts, principal.user, body.code, body.proof(), principal.session_id
    )
    return ok(UserOut.of(user).model_dump(mode="json"))
