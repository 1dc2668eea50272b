"""WeChat's answers as our error codes, the same for every call that takes a code from the client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from wardrobe.core.errors import AppError, DependencyUnavailable, ErrorCode, RateLimited
from wardrobe.core.ratelimit import per_seconds
from wardrobe.models import WeChatApp
from wardrobe.modules.auth.parts import AccountParts
from wardrobe.modules.auth.wechat_client import (
    WeChatClient,
    WeChatCodeInvalidError,
    WeChatError,
    WeChatRateLimitedError,
    WeChatUserBlockedError,
)
from wardrobe.modules.auth.wechat_oauth import STATE_TTL_SECONDS, WeChatOAuthClient, check_state


def wechat_of(parts: AccountParts) -> WeChatClient:
    if parts.wechat is None:
        raise AppError(ErrorCode.FEATURE_UNAVAILABLE, detail="wechat is not configured")
    return parts.wechat


def oauth_of(parts: AccountParts, app: WeChatApp) -> WeChatOAuthClient:
    client = parts.wechat_oauth.web if app is WeChatApp.WEB else parts.wechat_oauth.mobile
    if client is None:
        raise AppError(ErrorCode.FEATURE_UNAVAILABLE, detail=f"wechat {app.value} login is not configured")
    return client


def _state_refused(message: str) -> AppError:
    return AppError(ErrorCode.AUTH_CODE_INVALID, data=[{"field": "state", "message": message}])


async def consume_state(parts: AccountParts, state: str) -> None:
    """A website login's state must be one we issued, unexpired, and used once: the second use of
    one is refused in every process (the limiter's store is shared)."""
    if not check_state(parts.settings.jwt_secret.get_secret_value(), state):
        raise _state_refused("not a login we started, or it expired; start the WeChat login again")
    try:
        await parts.limiter.hit([per_seconds(1, STATE_TTL_SECONDS)], "wechat-state", state)
    except RateLimited:
        raise _state_refused("this login was already finished; start the WeChat login again") from None


@contextmanager
def wechat_answers() -> Iterator[None]:
    """A code WeChat refuses is the client's (AUTH_CODE_INVALID), a blocked user's account is
    disabled, WeChat's own frequency limit is ours to wait out, anything else is WeChat being
    unavailable."""
    try:
        yield
    except WeChatCodeInvalidError as exc:
        raise AppError(ErrorCode.AUTH_CODE_INVALID) from exc
    except WeChatRateLimitedError as exc:
        raise RateLimited(60, detail="wechat 45011") from exc
    except WeChatUserBlockedError as exc:
        raise AppError(ErrorCode.ACCOUNT_DISABLED, detail="wechat 40226") from exc
    except WeChatError as exc:
        raise DependencyUnavailable(detail=f"wechat {exc}") from exc
