"""A thin async client for the WeChat mini-program server API: login, phone number, stable token.

WeChat answers errors as HTTP 200 with ``errcode``/``errmsg`` and labels some JSON bodies as
``text/plain``, so every body is parsed as JSON whatever its Content-Type.

The stable access token is shared: in Redis when one is given (so every process uses the same
token), in process memory otherwise. It is cached for ``expires_in - 300`` seconds, which stays
clear of WeChat's rotation window, and refreshed by one caller at a time (an ``asyncio.Lock`` in
the process and a short Redis ``SET NX`` lock across processes). Refreshes always use normal mode:
``force_refresh`` revokes the token every other process is using and is capped at 20 a day.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
from redis.asyncio import Redis

from wardrobe.core.logging import get_logger

DEFAULT_BASE_URL = "https://api.weixin.qq.com"

_JSCODE2SESSION_PATH = "/sns/jscode2session"
_STABLE_ACCESS_PATH = "/cgi-bin/stable_token"
_PHONE_NUMBER_PATH = "/wxa/business/getuserphonenumber"
_TOKEN_SAFETY_MARGIN = 300  # WeChat rotates the token in its last five minutes
_TOKEN_REJECTED = frozenset({40001, 42001})
# Deletes the cached token only if it is still the one WeChat rejected, and releases the refresh
# lock only if we still hold it: both must not clobber another process's newer value.
_DELETE_IF_EQUAL = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class WeChatError(Exception):
    """WeChat refused or could not be reached; ``errcode`` is WeChat's (-1 for transport trouble)."""

    def __init__(self, errcode: int, errmsg: str = "") -> None:
        super().__init__(f"WeChat errcode {errcode}: {errmsg}" if errmsg else f"WeChat errcode {errcode}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeChatCodeInvalidError(WeChatError):
    """The login or phone code is unknown, used or expired (40029)."""


class WeChatRateLimitedError(WeChatError):
    """WeChat's frequency limit (45011, or 45009 for daily quotas)."""


class WeChatUserBlockedError(WeChatError):
    """WeChat blocks this user's login as high risk (40226)."""


class WeChatUnavailableError(WeChatError):
    """WeChat is busy (-1), unreachable, timed out, answered 5xx or something unexpected."""


class WeChatConfigError(WeChatError):
    """Our appid/secret (or IP allow-list) is wrong: 40013, 40125, 40164, 41002, 41004."""


class _AccessTokenRejectedError(WeChatError):
    """40001/42001: the access token we sent is not (or no longer) valid."""


_ERRORS: dict[int, type[WeChatError]] = {
    -1: WeChatUnavailableError,
    40029: WeChatCodeInvalidError,
    45011: WeChatRateLimitedError,
    45009: WeChatRateLimitedError,
    40163: WeChatCodeInvalidError,  # an OAuth code already exchanged
    40226: WeChatUserBlockedError,
    40013: WeChatConfigError,
    40125: WeChatConfigError,
    40164: WeChatConfigError,
    41002: WeChatConfigError,
    41004: WeChatConfigError,
    40001: _AccessTokenRejectedError,
    42001: _AccessTokenRejectedError,
}


@dataclass(frozen=True, slots=True)
class WeChatSession:
    openid: str
    unionid: str | None
    # Server-side only: never sent to the client, never shown in a repr or a log.
    session_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class WeChatPhone:
    phone_number: str
    pure_phone_number: str
    country_code: str


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


class WeChatTransport:
    """WeChat's server API as JSON answers: errors (always HTTP 200) become ``WeChatError``s and
    "-1 system busy" is retried once. Shared by the mini-program client and the OAuth clients."""

    _MAX_ATTEMPTS = 2

    def __init__(self, base_url: str, timeout: float, http: httpx.AsyncClient | None) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout)
        self._log = get_logger(__name__)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        for attempt in range(1, self._MAX_ATTEMPTS + 1):
            try:
                return await self._call_once(method, path, params=params, json_body=json_body)
            except WeChatUnavailableError as exc:
                if attempt == self._MAX_ATTEMPTS:
                    raise
                self._log.warning("wechat unavailable, retrying", path=path, errcode=exc.errcode)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _call_once(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None,
        json_body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(
                method, self._base_url + path, params=params, json=json_body, timeout=self._timeout
            )
        except httpx.TimeoutException:
            raise WeChatUnavailableError(-1, "timeout") from None
        except httpx.HTTPError as exc:
            # Only the kind of failure: the URL carries the app secret or the access token.
            raise WeChatUnavailableError(-1, f"network error: {type(exc).__name__}") from None
        if response.status_code != httpx.codes.OK:
            raise WeChatUnavailableError(-1, f"HTTP {response.status_code}")
        try:
            answer = json.loads(response.content)
        except ValueError:
            raise WeChatUnavailableError(-1, "answer is not JSON") from None
        if not isinstance(answer, dict):
            raise WeChatUnavailableError(-1, "answer is not a JSON object")
        errcode = answer.get("errcode", 0)
        if not isinstance(errcode, int):
            raise WeChatUnavailableError(-1, "errcode is not a number")
        if errcode != 0:
            errmsg = str(answer.get("errmsg", ""))
            raise _ERRORS.get(errcode, WeChatError)(errcode, errmsg)
        return answer


class WeChatClient(WeChatTransport):
    _LOCK_POLL_SECONDS = 0.05

    def __init__(
        self,
        appid: str,
        secret: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 5.0,
        redis: Redis | None = None,
        http: httpx.AsyncClient | None = None,
        cache_key_prefix: str = "wardrobe",
    ) -> None:
        super().__init__(base_url, timeout, http)
        self._appid = appid
        self._secret = secret
        self._redis = redis
        self._token_key = f"{cache_key_prefix}:wechat:{appid}:stable_token"
        self._lock_key = f"{self._token_key}:lock"
        # The lock outlives a refresh (two attempts of ``timeout``) so it is not released under a
        # live holder, yet expires soon enough if the holder dies.
        self._lock_ttl_ms = int((timeout * self._MAX_ATTEMPTS + 1) * 1000)
        self._lock_wait_attempts = math.ceil(self._lock_ttl_ms / 1000 / self._LOCK_POLL_SECONDS)
        self._local_token: tuple[str, float] | None = None  # (token, monotonic deadline)
        self._refresh_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"WeChatClient(appid={self._appid!r}, base_url={self._base_url!r})"

    # -- public API ----------------------------------------------------------------------------

    async def code2session(self, js_code: str) -> WeChatSession:
        """Exchange a ``wx.login`` code for the user's openid (and unionid when bound)."""
        answer = await self._call(
            "GET",
            _JSCODE2SESSION_PATH,
            params={
                "appid": self._appid,
                "secret": self._secret,
                "js_code": js_code,
                "grant_type": "authorization_code",
            },
        )
        openid = answer.get("openid")
        session_key = answer.get("session_key")
        if not isinstance(openid, str) or not openid or not isinstance(session_key, str):
            raise WeChatUnavailableError(-1, "unexpected jscode2session answer")
        unionid = answer.get("unionid")
        return WeChatSession(
            openid=openid,
            unionid=unionid if isinstance(unionid, str) and unionid else None,
            session_key=session_key,
        )

    async def get_phone_number(self, phone_code: str) -> WeChatPhone:
        """Exchange a ``getPhoneNumber`` code for the user's phone number."""
        token = await self.access_token()
        try:
            answer = await self._phone_number_call(token, phone_code)
        except _AccessTokenRejectedError as exc:
            self._log.warning("wechat access token rejected, refreshing", errcode=exc.errcode)
            token = await self._refresh(rejected=token)
            try:
                answer = await self._phone_number_call(token, phone_code)
            except _AccessTokenRejectedError as again:
                raise WeChatUnavailableError(again.errcode, again.errmsg) from None
        info = answer.get("phone_info")
        if not isinstance(info, dict):
            raise WeChatUnavailableError(-1, "unexpected getuserphonenumber answer")
        phone_number = info.get("phoneNumber")
        pure_phone_number = info.get("purePhoneNumber")
        country_code = info.get("countryCode")
        if not isinstance(phone_number, str) or not isinstance(pure_phone_number, str) or not phone_number:
            raise WeChatUnavailableError(-1, "unexpected getuserphonenumber answer")
        return WeChatPhone(
            phone_number=phone_number,
            pure_phone_number=pure_phone_number,
            country_code=str(country_code) if country_code is not None else "",
        )

    async def access_token(self) -> str:
        """The stable access token, from the shared cache or fetched by a single caller."""
        cached = await self._read_cached_token()
        if cached is not None:
            return cached
        return await self._refresh(rejected=None)

    # -- stable token --------------------------------------------------------------------------

    async def _refresh(self, rejected: str | None) -> str:
        async with self._refresh_lock:
            # Whoever held the lock before us may already have refreshed.
            cached = await self._read_cached_token()
            if cached is not None and cached != rejected:
                return cached
            if rejected is not None:
                await self._forget_token(rejected)
            if self._redis is None:
                return await self._fetch_and_store()
            return await self._refresh_across_processes(self._redis, rejected)

    async def _refresh_across_processes(self, redis: Redis, rejected: str | None) -> str:
        lock_value = secrets.token_hex(16)
        for _ in range(self._lock_wait_attempts):
            if await redis.set(self._lock_key, lock_value, nx=True, px=self._lock_ttl_ms):
                try:
                    cached = await self._read_cached_token()
                    if cached is not None and cached != rejected:
                        return cached
                    return await self._fetch_and_store()
                finally:
                    await redis.eval(_DELETE_IF_EQUAL, 1, self._lock_key, lock_value)
            # Another process is refreshing: wait for its token to appear in the cache.
            await asyncio.sleep(self._LOCK_POLL_SECONDS)
            cached = await self._read_cached_token()
            if cached is not None and cached != rejected:
                return cached
        # The holder neither finished nor let its lock expire in time. Normal mode hands everyone
        # the same token, so fetching it ourselves is safe.
        return await self._fetch_and_store()

    async def _fetch_and_store(self) -> str:
        answer = await self._call(
            "POST",
            _STABLE_ACCESS_PATH,
            json_body={
                "grant_type": "client_credential",
                "appid": self._appid,
                "secret": self._secret,
                "force_refresh": False,
            },
        )
        token = answer.get("access_token")
        expires_in = answer.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int) or expires_in <= 0:
            raise WeChatUnavailableError(-1, "unexpected stable_token answer")
        ttl = max(expires_in - _TOKEN_SAFETY_MARGIN, 1)
        if self._redis is not None:
            await self._redis.set(self._token_key, token, ex=ttl)
        else:
            self._local_token = (token, time.monotonic() + ttl)
        return token

    async def _read_cached_token(self) -> str | None:
        if self._redis is not None:
            return _text(await self._redis.get(self._token_key))
        if self._local_token is not None and time.monotonic() < self._local_token[1]:
            return self._local_token[0]
        return None

    async def _forget_token(self, token: str) -> None:
        if self._redis is not None:
            await self._redis.eval(_DELETE_IF_EQUAL, 1, self._token_key, token)
        elif self._local_token is not None and self._local_token[0] == token:
            self._local_token = None

    # -- transport -----------------------------------------------------------------------------

    async def _phone_number_call(self, token: str, phone_code: str) -> dict[str, Any]:
        return await self._call(
            "POST", _PHONE_NUMBER_PATH, params={"access_token": token}, json_body={"code": phone_code}
        )


__all__ = [
    "DEFAULT_BASE_URL",
    "WeChatClient",
    "WeChatCodeInvalidError",
    "WeChatConfigError",
    "WeChatError",
    "WeChatPhone",
    "WeChatRateLimitedError",
    "WeChatSession",
    "WeChatTransport",
    "WeChatUnavailableError",
    "WeChatUserBlockedError",
]
