"""Local peer of the WeChat server API (design/protocols.md §1) and of the Open Platform's login.

Covers ``/sns/jscode2session``, ``/cgi-bin/stable_token`` and
``/wxa/business/getuserphonenumber`` of the mini program, and the Open Platform's website and
mobile app login: ``/connect/qrconnect`` (the QR page, which checks the appid, scope and redirect
domain and, once a test has "scanned", redirects with ``code`` and ``state``) and
``/sns/oauth2/access_token`` (codes single-use, per app, 5 minutes; ``40029``, ``40163``). All of
it with WeChat's rules: single-use codes that expire, the stable
token that rotates in its last five minutes (both tokens valid meanwhile) and is revoked by
``force_refresh``, and errors that always arrive as HTTP 200 with ``errcode``/``errmsg``.
``jscode2session`` answers with ``text/plain`` as WeChat does, so clients must parse JSON whatever
the Content-Type.

Handling is synchronous under one lock: the server thread and the test thread share the state.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Clock = Callable[[], float]

# Obviously fake application credentials, shared by the peer fixture and the tests.
TEST_WECHAT_APPID = "wx-test-appid-0000"
TEST_WECHAT_SECRET = "wechat-test-secret-not-real"

JSCODE2SESSION_PATH = "/sns/jscode2session"
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"
PHONE_NUMBER_PATH = "/wxa/business/getuserphonenumber"
OAUTH_TOKEN_PATH = "/sns/oauth2/access_token"
QRCONNECT_PATH = "/connect/qrconnect"

# The Open Platform apps of the same account as the mini program (one unionid across them).
TEST_WEB_APPID = "wx-test-web-0000"
TEST_WEB_SECRET = "wechat-web-secret-not-real"
TEST_MOBILE_APPID = "wx-test-mobile-0000"
TEST_MOBILE_SECRET = "wechat-mobile-secret-not-real"

_CHINA_TZ = timezone(timedelta(hours=8))
_JSON = "application/json; charset=UTF-8"

Answer = dict[str, Any]


def _rid() -> str:
    return "-".join(uuid.uuid4().hex[i : i + 8] for i in (0, 8, 16))


def _error(errcode: int, errmsg: str) -> Answer:
    return {"errcode": errcode, "errmsg": f"{errmsg} rid: {_rid()}"}


@dataclass(slots=True)
class _LoginCode:
    openid: str | None
    unionid: str | None
    issued_at: float
    blocked: bool = False
    used: bool = False


@dataclass(slots=True)
class _PhoneCode:
    phone: str
    country_code: str
    issued_at: float
    used: bool = False


@dataclass(slots=True)
class _OAuthApp:
    secret: str
    website: bool
    redirect_host: str | None  # the domain registered for a website app's callbacks


@dataclass(slots=True)
class _OAuthCode:
    appid: str
    openid: str
    unionid: str | None
    issued_at: float
    used: bool = False


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float
    revoked: bool = False


class WeChatPeer:
    """State and behaviour of the peer; the Starlette app only moves bytes in and out."""

    def __init__(
        self,
        appid: str = TEST_WECHAT_APPID,
        secret: str = TEST_WECHAT_SECRET,
        *,
        clock: Clock = time.time,
        code_ttl: float = 300,
        token_ttl: int = 7200,
        rotation_window: int = 300,
        code2session_per_minute: int = 100,
        force_refresh_per_day: int = 20,
        force_refresh_gap: float = 30,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.clock = clock
        self.code_ttl = code_ttl
        self.token_ttl = token_ttl
        self.rotation_window = rotation_window
        self.code2session_per_minute = code2session_per_minute
        self.force_refresh_per_day = force_refresh_per_day
        self.force_refresh_gap = force_refresh_gap
        self.tokens_issued = 0
        self.calls: Counter[str] = Counter()  # path -> requests, faults included
        self.session_keys: dict[str, str] = {}  # openid -> last session_key handed out
        self._login_codes: dict[str, _LoginCode] = {}
        self._phone_codes: dict[str, _PhoneCode] = {}
        self._tokens: dict[str, _Token] = {}
        self._current: _Token | None = None
        self._force_refreshes: list[float] = []
        self._logins: dict[str, list[float]] = {}
        self._faults: list[str | None] = []
        self._oauth_apps: dict[str, _OAuthApp] = {}
        self._oauth_codes: dict[str, _OAuthCode] = {}
        self._scanners: dict[str, tuple[str, str | None] | None] = {}  # appid -> who scans (None: refuses)
        self._lock = threading.Lock()

    # -- test controls -------------------------------------------------------------------------

    def register_login_code(self, code: str, openid: str, unionid: str | None = None) -> None:
        with self._lock:
            self._login_codes[code] = _LoginCode(openid, unionid, self.clock())

    def block_code(self, code: str) -> None:
        """Make ``code`` belong to a user WeChat blocks as high-risk (errcode 40226)."""
        with self._lock:
            existing = self._login_codes.get(code)
            if existing is None:
                self._login_codes[code] = _LoginCode(None, None, self.clock(), blocked=True)
            else:
                existing.blocked = True

    def register_phone_code(self, code: str, phone: str, country_code: str = "86") -> None:
        """``phone`` is the number without its country code, e.g. ``13800138000``."""
        with self._lock:
            self._phone_codes[code] = _PhoneCode(phone, country_code, self.clock())

    def register_oauth_app(self, appid: str, secret: str, *, website: bool, redirect_host: str | None = None) -> None:
        """An Open Platform app: a website app (QR login, callbacks only to ``redirect_host``) or a
        mobile app."""
        with self._lock:
            self._oauth_apps[appid] = _OAuthApp(secret, website, redirect_host)

    def register_oauth_code(self, appid: str, code: str, openid: str, unionid: str | None = None) -> None:
        """A code the app's user got from WeChat (the mobile OpenSDK's SendAuth answer)."""
        with self._lock:
            self._oauth_codes[code] = _OAuthCode(appid, openid, unionid, self.clock())

    def scan_as(self, appid: str, openid: str | None, unionid: str | None = None) -> None:
        """The next visits to ``appid``'s QR page are scanned by this user (``openid`` None: the
        user refuses, and WeChat redirects with the state only)."""
        with self._lock:
            self._scanners[appid] = (openid, unionid) if openid is not None else None

    def fail_next(self, count: int, *, path: str | None = None) -> None:
        """Answer the next ``count`` requests (to ``path`` only, if given) with errcode -1."""
        with self._lock:
            self._faults.extend([path] * count)

    @property
    def code2session_calls(self) -> int:
        return self.calls[JSCODE2SESSION_PATH]

    @property
    def stable_token_calls(self) -> int:
        return self.calls[STABLE_TOKEN_PATH]

    @property
    def phone_number_calls(self) -> int:
        return self.calls[PHONE_NUMBER_PATH]

    @property
    def current_token(self) -> str | None:
        with self._lock:
            return self._current.value if self._current else None

    # -- protocol ------------------------------------------------------------------------------

    def handle(
        self, *, method: str, path: str, query: Mapping[str, str], content_type: str, body: bytes
    ) -> tuple[str, bytes]:
        """Answer one request; returns media type and body (the status is always 200)."""
        with self._lock:
            answer = self._dispatch(method, path, query, content_type, body)
        media_type = "text/plain" if path == JSCODE2SESSION_PATH else _JSON
        return media_type, json.dumps(answer, ensure_ascii=False).encode("utf-8")

    def _dispatch(self, method: str, path: str, query: Mapping[str, str], content_type: str, body: bytes) -> Answer:
        routes: dict[tuple[str, str], Callable[[], Answer]] = {
            ("GET", JSCODE2SESSION_PATH): lambda: self._jscode2session(query),
            ("POST", STABLE_TOKEN_PATH): lambda: self._stable_token(content_type, body),
            ("POST", PHONE_NUMBER_PATH): lambda: self._phone_number(query, content_type, body),
            ("GET", OAUTH_TOKEN_PATH): lambda: self._oauth_token(query),
        }
        route = routes.get((method, path))
        if route is None:
            return _error(40066, "invalid url")
        self.calls[path] += 1
        for index, fault_path in enumerate(self._faults):
            if fault_path is None or fault_path == path:
                del self._faults[index]
                return {"errcode": -1, "errmsg": "system error"}
        return route()

    def _check_app(self, appid: object, secret: object) -> Answer | None:
        if not appid:
            return _error(41002, "appid missing")
        if not secret:
            return _error(41004, "appsecret missing")
        if appid != self.appid:
            return _error(40013, "invalid appid")
        if secret != self.secret:
            return _error(40125, "invalid appsecret")
        return None

    def _jscode2session(self, query: Mapping[str, str]) -> Answer:
        if query.get("grant_type") != "authorization_code":
            return _error(40002, "invalid grant_type")
        app_error = self._check_app(query.get("appid"), query.get("secret"))
        if app_error is not None:
            return app_error
        js_code = query.get("js_code")
        if not js_code:
            return _error(41008, "missing code")
        now = self.clock()
        entry = self._login_codes.get(js_code)
        if entry is not None and entry.blocked:
            return _error(40226, "high risk user, login blocked")
        if entry is None or entry.openid is None or entry.used or now - entry.issued_at >= self.code_ttl:
            return _error(40029, "invalid code,")
        recent = [at for at in self._logins.get(entry.openid, []) if now - 60 < at <= now]
        if len(recent) >= self.code2session_per_minute:
            # The code stays unused: WeChat refused before looking at it.
            return _error(45011, "api minute-quota reach limit  mustslower  retry next minute,")
        recent.append(now)
        self._logins[entry.openid] = recent
        entry.used = True
        session_key = base64.b64encode(secrets.token_bytes(16)).decode("ascii")
        self.session_keys[entry.openid] = session_key
        answer: Answer = {"session_key": session_key, "openid": entry.openid}
        if entry.unionid is not None:
            answer["unionid"] = entry.unionid
        return answer

    def _oauth_token(self, query: Mapping[str, str]) -> Answer:
        if query.get("grant_type") != "authorization_code":
            return _error(40002, "invalid grant_type")
        appid, secret = query.get("appid"), query.get("secret")
        if not appid:
            return _error(41002, "appid missing")
        if not secret:
            return _error(41004, "appsecret missing")
        app = self._oauth_apps.get(appid)
        if app is None:
            return _error(40013, "invalid appid")
        if secret != app.secret:
            return _error(40125, "invalid appsecret")
        code = query.get("code")
        if not code:
            return _error(41008, "missing code")
        entry = self._oauth_codes.get(code)
        if entry is None or entry.appid != appid or self.clock() - entry.issued_at >= self.code_ttl:
            return _error(40029, "invalid code")
        if entry.used:
            return _error(40163, "code been used")
        entry.used = True
        answer: Answer = {
            "access_token": f"test-sns-token-{secrets.token_hex(12)}",
            "expires_in": 7200,
            "refresh_token": f"test-sns-refresh-{secrets.token_hex(12)}",
            "openid": entry.openid,
            "scope": "snsapi_login" if app.website else "snsapi_userinfo",
        }
        if entry.unionid is not None:
            answer["unionid"] = entry.unionid
        return answer

    def qrconnect(self, query: Mapping[str, str]) -> tuple[int, str, str]:
        """The QR page: (status, Location or "", page text). Errors are pages, as WeChat's are."""
        with self._lock:
            self.calls[QRCONNECT_PATH] += 1
            app = self._oauth_apps.get(query.get("appid", ""))
            if app is None or not app.website or query.get("response_type") != "code":
                return 200, "", "参数错误"
            if query.get("scope") != "snsapi_login":
                return 200, "", "Scope 参数错误或没有 Scope 权限"
            redirect_uri = query.get("redirect_uri", "")
            parsed = urlsplit(redirect_uri)
            if parsed.scheme not in ("http", "https") or parsed.hostname != app.redirect_host:
                return 200, "", "redirect_uri 参数错误"
            appid = query["appid"]
            if appid not in self._scanners:
                return 200, "", "微信登录：请使用微信扫描二维码登录"
            scanner = self._scanners[appid]
            params: dict[str, str] = {}
            if scanner is not None:
                code = f"web-code-{secrets.token_hex(8)}"
                self._oauth_codes[code] = _OAuthCode(appid, scanner[0], scanner[1], self.clock())
                params["code"] = code
            if "state" in query:
                params["state"] = query["state"]
            separator = "&" if parsed.query else "?"
            return 302, f"{redirect_uri}{separator}{urlencode(params)}", ""

    @staticmethod
    def _json_body(content_type: str, body: bytes) -> dict[str, Any] | None:
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return None
        try:
            parsed = json.loads(body)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def _stable_token(self, content_type: str, body: bytes) -> Answer:
        params = self._json_body(content_type, body)
        if params is None:
            return _error(47001, "data format error hint:")
        if params.get("grant_type") != "client_credential":
            return _error(40002, "invalid grant_type")
        app_error = self._check_app(params.get("appid"), params.get("secret"))
        if app_error is not None:
            return app_error
        now = self.clock()
        if params.get("force_refresh") is True:
            if self._force_refreshes and now - self._force_refreshes[-1] < self.force_refresh_gap:
                return _error(45011, "api minute-quota reach limit  mustslower  retry next minute,")
            today = datetime.fromtimestamp(now, _CHINA_TZ).date()
            used_today = sum(1 for at in self._force_refreshes if datetime.fromtimestamp(at, _CHINA_TZ).date() == today)
            if used_today >= self.force_refresh_per_day:
                return _error(45009, "reach max api daily quota limit")
            self._force_refreshes.append(now)
            # Force mode kills every live token, including one still in its overlap window.
            for token in self._tokens.values():
                token.revoked = True
            token = self._issue(now)
        else:
            current = self._current
            if current is None or current.revoked or now >= current.expires_at - self.rotation_window:
                # The old token stays valid until its own expiry: that is the overlap.
                current = self._issue(now)
            token = current
        return {"access_token": token.value, "expires_in": int(token.expires_at - now)}

    def _issue(self, now: float) -> _Token:
        token = _Token(f"test-access-token-{secrets.token_hex(12)}", now + self.token_ttl)
        self._tokens[token.value] = token
        self._current = token
        self.tokens_issued += 1
        return token

    def _phone_number(self, query: Mapping[str, str], content_type: str, body: bytes) -> Answer:
        access_token = query.get("access_token")
        if not access_token:
            return _error(41001, "access_token missing")
        now = self.clock()
        token = self._tokens.get(access_token)
        if token is None or token.revoked:
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        if now >= token.expires_at:
            return _error(42001, "access_token expired")
        params = self._json_body(content_type, body)
        if params is None:
            return _error(47001, "data format error hint:")
        code = params.get("code")
        if not isinstance(code, str) or not code:
            return _error(41008, "missing code")
        entry = self._phone_codes.get(code)
        if entry is None or entry.used or now - entry.issued_at >= self.code_ttl:
            return _error(40029, "invalid code,")
        entry.used = True
        full = entry.phone if entry.country_code == "86" else f"+{entry.country_code}{entry.phone}"
        return {
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": full,
                "purePhoneNumber": entry.phone,
                "countryCode": entry.country_code,
                "watermark": {"timestamp": int(now), "appid": self.appid},
            },
        }


def create_wechat_app(peer: WeChatPeer) -> Starlette:
    """The ASGI app; tests may replace ``app.state.peer`` to start from fresh state."""

    async def endpoint(request: Request) -> Response:
        current: WeChatPeer = request.app.state.peer
        body = await request.body()
        media_type, content = current.handle(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            content_type=request.headers.get("content-type", ""),
            body=body,
        )
        return Response(content, status_code=200, media_type=media_type)

    async def qrconnect(request: Request) -> Response:
        current: WeChatPeer = request.app.state.peer
        status, location, text = current.qrconnect(dict(request.query_params))
        if status == 302:
            return Response(status_code=302, headers={"Location": location})
        page = f"<!doctype html><html lang=zh><meta charset=utf-8><title>微信登录</title><p>{text}</p></html>"
        return Response(page, status_code=status, media_type="text/html; charset=utf-8")

    paths = (JSCODE2SESSION_PATH, STABLE_TOKEN_PATH, PHONE_NUMBER_PATH, OAUTH_TOKEN_PATH)
    routes = [Route(path, endpoint, methods=["GET", "POST"]) for path in paths]
    app = Starlette(routes=[*routes, Route(QRCONNECT_PATH, qrconnect, methods=["GET"])])
    app.state.peer = peer
    return app
