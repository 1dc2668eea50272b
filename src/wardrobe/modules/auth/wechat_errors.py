"""WeChat's answers as our error codes, the same for every call that takes a code from the client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from wardrobe.core.errors import AppError, DependencyUnavailable, ErrorCode, RateLimited
from wardrobe.modules.auth.parts import AccountParts
from wardrobe.modules.auth.wechat_client import (
    WeChatClient,
    WeChatCodeInvalidError,
    WeChatError,
    WeChatRateLimitedError,
    WeChatUserBlockedError,
)


def wechat_of(parts: AccountParts) -> WeChatClient:
    if parts.wechat is None:
        raise AppError(ErrorCode.FEATURE_UNAVAILABLE, detail="wechat is not configured")
    return parts.wechat


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
