"""WeChat login on the web (Open Platform website app, QR code) and in a mobile app (OpenSDK).

Both end in the same exchange, ``GET /sns/oauth2/access_token`` with the app's own appid and
secret, which answers the user's ``openid`` for that app and, when the app is bound to the
Open Platform account, the ``unionid`` shared by every app of the account (the mini program
included): that is what makes one person one account on every client (``users.service``).

The website flow is a redirect: the browser goes to ``qrconnect`` with our ``state``, the user scans,
and WeChat sends the browser back to our ``redirect_uri`` with ``code`` and ``state``. The state is
what stops a forged callback (login CSRF: a victim's browser finishing an attacker's WeChat login):
WeChat caps it at 128 bytes, too short for a JWT, so it is a nonce, an expiry and an HMAC of both
under a key derived from the JWT secret (``issue_state``/``check_state``), and its single use is
counted in the rate limiter's store, which every process shares. The page that started the login
keeps the state too and refuses a callback that does not carry it (docs/clients.md, "Logging in").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from wardrobe.modules.auth.wechat_client import WeChatTransport, WeChatUnavailableError

DEFAULT_OPEN_BASE_URL = "https://open.weixin.qq.com"
_ACCESS_TOKEN_PATH = "/sns/oauth2/access_token"  # noqa: S105 - a URL path
_QRCONNECT_PATH = "/connect/qrconnect"
STATE_TTL_SECONDS = 600


@dataclass(frozen=True, slots=True)
class WeChatIdentity:
    openid: str
    unionid: str | None


class WeChatOAuthClient(WeChatTransport):
    """One Open Platform app (website or mobile): its code exchange and, for a website, its QR URL."""

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        base_url: str,
        timeout: float,
        open_base_url: str = DEFAULT_OPEN_BASE_URL,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, timeout, http)
        self.appid = appid
        self._secret = secret
        self._open_base_url = open_base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"WeChatOAuthClient(appid={self.appid!r}, base_url={self._base_url!r})"

    def qrconnect_url(self, redirect_uri: str, state: str) -> str:
        query = urlencode(
            {
                "appid": self.appid,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": "snsapi_login",
                "state": state,
            }
        )
        return f"{self._open_base_url}{_QRCONNECT_PATH}?{query}#wechat_redirect"

    async def exchange_code(self, code: str) -> WeChatIdentity:
        """The user behind an authorization ``code`` (single use, about five minutes)."""
        answer = await self._call(
            "GET",
            _ACCESS_TOKEN_PATH,
            params={"appid": self.appid, "secret": self._secret, "code": code, "grant_type": "authorization_code"},
        )
        openid = answer.get("openid")
        if not isinstance(openid, str) or not openid or not isinstance(answer.get("access_token"), str):
            raise WeChatUnavailableError(-1, "unexpected oauth2/access_token answer")
        # The user's access and refresh tokens are dropped: we ask nothing more of WeChat for them.
        unionid = answer.get("unionid")
        return WeChatIdentity(openid=openid, unionid=unionid if isinstance(unionid, str) and unionid else None)


@dataclass(slots=True)
class WeChatOAuthApps:
    """The configured Open Platform apps; either may be None."""

    web: WeChatOAuthClient | None = None
    mobile: WeChatOAuthClient | None = None

    async def aclose(self) -> None:
        for client in (self.web, self.mobile):
            if client is not None:
                await client.aclose()


def _state_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"wardrobe/wechat-oauth-state", hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:18])


def issue_state(secret: str, now: float | None = None) -> str:
    """``nonce.expiry.mac``: 64 characters of URL-safe text."""
    expires = int(now if now is not None else time.time()) + STATE_TTL_SECONDS
    body = f"{_b64(secrets.token_bytes(18))}.{expires}"
    return f"{body}.{_mac(_state_key(secret), body)}"


def check_state(secret: str, state: str, now: float | None = None) -> bool:
    """True for a state we issued that has not expired (its single use is the caller's to count)."""
    parts = state.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    body = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_mac(_state_key(secret), body), parts[2]):
        return False
    return int(parts[1]) > int(now if now is not None else time.time())


__all__ = [
    "STATE_TTL_SECONDS",
    "WeChatIdentity",
    "WeChatOAuthApps",
    "WeChatOAuthClient",
    "check_state",
    "issue_state",
]
