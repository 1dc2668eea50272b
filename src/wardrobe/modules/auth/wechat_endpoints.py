"""HTTP routes of /api/v1/auth that tell a login page what works, start a WeChat QR login and link a
WeChat user to an account made otherwise (by SMS, say), so that it can log in and pay with WeChat."""

from __future__ import annotations

from fastapi import APIRouter

from wardrobe.core.deps import SessionDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.principal import CurrentUser
from wardrobe.models import WeChatApp
from wardrobe.modules.auth import service
from wardrobe.modules.auth.parts import AccountPartsDep
from wardrobe.modules.auth.schemas import LoginMethods, WeChatAuthorize, WeChatLinked, WeChatLinkRequest
from wardrobe.modules.auth.wechat_errors import oauth_of
from wardrobe.modules.auth.wechat_oauth import STATE_TTL_SECONDS, issue_state

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.get(
    "/methods",
    summary="The ways to log in that this deployment offers",
    response_model=Envelope[LoginMethods],
)
async def login_methods(parts: AccountPartsDep) -> OrjsonResponse:
    return ok(
        {
            "sms": True,
            "password": True,
            "wechat_miniprogram": parts.wechat is not None,
            "wechat_web": parts.wechat_oauth.web is not None,
            "wechat_app": parts.wechat_oauth.mobile is not None,
        }
    )


@router.get(
    "/wechat/web/authorize",
    summary="Start a WeChat QR login on the web: where to send the browser",
    description="Send the browser to `url` (WeChat's QR page). When the user has scanned and agreed, "
    "WeChat sends the browser back to `redirect_uri` with `code` and `state`; check that `state` is the "
    "one this answer gave (keep it in sessionStorage), then `POST /api/v1/auth/login` with "
    '`{"method": "wechat_web", "code", "state"}`. A state works once, for 10 minutes. One person is '
    "one account on the mini program, the web and the app when their WeChat apps share an Open "
    "Platform account (the unionid).",
    response_model=Envelope[WeChatAuthorize],
    responses=errors(ErrorCode.FEATURE_UNAVAILABLE),
)
async def wechat_web_authorize(parts: AccountPartsDep) -> OrjsonResponse:
    client = oauth_of(parts, WeChatApp.WEB)
    state = issue_state(parts.settings.jwt_secret.get_secret_value())
    redirect_uri = parts.settings.wechat_web_redirect_uri
    return ok(
        {
            "url": client.qrconnect_url(redirect_uri, state),
            "state": state,
            "redirect_uri": redirect_uri,
            "expires_in": STATE_TTL_SECONDS,
        }
    )


@router.post(
    "/wechat/link",
    summary="Link a WeChat user to this account (needs fresh proof)",
    description="For an account made by SMS or password: after this, the WeChat user logs in to it from "
    "that app (and, by unionid, from the others), and the mini program's user can pay with `wechat_jsapi`. "
    "Send the WeChat code (`link_code`, `link_app`, and `state` for a QR login) and exactly one proof: "
    "`code` (an SMS code with purpose `link_wechat`, sent to this account's phone), `password`, or "
    "`wechat_code`. A WeChat user that has another account here, or an account that already has another "
    "WeChat user of that app or of the platform, is 409 `WECHAT_ALREADY_BOUND`.",
    response_model=Envelope[WeChatLinked],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.AUTH_CODE_INVALID,
        ErrorCode.AUTH_INVALID_CREDENTIALS,
        ErrorCode.WECHAT_ALREADY_BOUND,
        ErrorCode.FEATURE_UNAVAILABLE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)
async def wechat_link(
    body: WeChatLinkRequest, principal: CurrentUser, parts: AccountPartsDep, session: SessionDep
) -> OrjsonResponse:
    await service.link_wechat(
        session,
        parts,
        principal.user,
        app=body.link_app,
        code=body.link_code,
        state=body.state,
        proof=body.proof(),
    )
    return ok({"app": body.link_app.value})
