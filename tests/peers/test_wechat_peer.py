"""The WeChat peer rejects what WeChat would reject, checked over raw HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.peers.fixtures import PeerClock, ServedWeChatPeer
from tests.peers.wechat import (
    JSCODE2SESSION_PATH,
    OAUTH_TOKEN_PATH,
    PHONE_NUMBER_PATH,
    QRCONNECT_PATH,
    STABLE_TOKEN_PATH,
    TEST_MOBILE_APPID,
    TEST_MOBILE_SECRET,
    TEST_WEB_APPID,
    TEST_WEB_SECRET,
    TEST_WECHAT_APPID,
    TEST_WECHAT_SECRET,
)


class WeChatCaller:
    """Raw requests to the peer; every answer must be HTTP 200 JSON whatever happened."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @staticmethod
    def _answer(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200
        answer: dict[str, Any] = response.json()
        return answer

    async def login(self, js_code: str, **overrides: str) -> dict[str, Any]:
        params = {
            "appid": TEST_WECHAT_APPID,
            "secret": TEST_WECHAT_SECRET,
            "js_code": js_code,
            "grant_type": "authorization_code",
        } | overrides
        return self._answer(await self.http.get(JSCODE2SESSION_PATH, params=params))

    async def stable_token(
        self, *, force_refresh: bool = False, overrides: dict[str, str] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "grant_type": "client_credential",
            "appid": TEST_WECHAT_APPID,
            "secret": TEST_WECHAT_SECRET,
            "force_refresh": force_refresh,
        } | (overrides or {})
        return self._answer(await self.http.post(STABLE_TOKEN_PATH, json=body))

    async def token(self, *, force_refresh: bool = False) -> str:
        answer = await self.stable_token(force_refresh=force_refresh)
        token: str = answer["access_token"]
        return token

    async def phone(self, access_token: str, code: str) -> dict[str, Any]:
        response = await self.http.post(PHONE_NUMBER_PATH, params={"access_token": access_token}, json={"code": code})
        return self._answer(response)


@pytest.fixture
async def wechat(wechat_peer: ServedWeChatPeer) -> AsyncIterator[WeChatCaller]:
    async with httpx.AsyncClient(base_url=wechat_peer.base_url, timeout=5) as http:
        yield WeChatCaller(http)


# -- jscode2session --------------------------------------------------------------------------


async def test_login_code_gives_openid_unionid_and_session_key(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller
) -> None:
    wechat_peer.register_login_code("login-code-1", "openid-1", unionid="unionid-1")

    response = await wechat.http.get(
        JSCODE2SESSION_PATH,
        params={
            "appid": TEST_WECHAT_APPID,
            "secret": TEST_WECHAT_SECRET,
            "js_code": "login-code-1",
            "grant_type": "authorization_code",
        },
    )

    # WeChat labels this JSON as text/plain; clients must parse it anyway.
    assert response.headers["content-type"].startswith("text/plain")
    answer = response.json()
    assert answer["openid"] == "openid-1"
    assert answer["unionid"] == "unionid-1"
    assert answer["session_key"] == wechat_peer.session_keys["openid-1"]
    assert "errcode" not in answer


async def test_unionid_is_absent_when_not_bound(wechat_peer: ServedWeChatPeer, wechat: WeChatCaller) -> None:
    wechat_peer.register_login_code("login-code-1", "openid-1")

    assert "unionid" not in await wechat.login("login-code-1")


async def test_login_code_is_single_use(wechat_peer: ServedWeChatPeer, wechat: WeChatCaller) -> None:
    wechat_peer.register_login_code("login-code-1", "openid-1")

    await wechat.login("login-code-1")
    again = await wechat.login("login-code-1")

    assert again["errcode"] == 40029
    assert again["errmsg"].startswith("invalid code")
    assert "rid:" in again["errmsg"]


async def test_login_code_expires_after_300_seconds(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, peer_clock: PeerClock
) -> None:
    wechat_peer.register_login_code("fresh-enough", "openid-1")
    wechat_peer.register_login_code("too-old", "openid-2")
    peer_clock.advance(299)

    fresh = await wechat.login("fresh-enough")
    peer_clock.advance(1)
    old = await wechat.login("too-old")

    assert fresh["openid"] == "openid-1"
    assert old["errcode"] == 40029


async def test_unknown_login_code_is_invalid(wechat: WeChatCaller) -> None:
    assert (await wechat.login("never-registered"))["errcode"] == 40029


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"grant_type": "client_credential"}, 40002),
        ({"appid": "wx-some-other-app"}, 40013),
        ({"secret": "another-fake-secret"}, 40125),
        ({"appid": ""}, 41002),
        ({"secret": ""}, 41004),
    ],
)
async def test_login_checks_grant_type_and_app_credentials(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, overrides: dict[str, str], errcode: int
) -> None:
    wechat_peer.register_login_code("login-code-1", "openid-1")

    answer = await wechat.login("login-code-1", **overrides)

    assert answer["errcode"] == errcode
    # A refused request does not burn the code.
    assert (await wechat.login("login-code-1"))["openid"] == "openid-1"


async def test_blocked_code_is_40226(wechat_peer: ServedWeChatPeer, wechat: WeChatCaller) -> None:
    wechat_peer.register_login_code("risky-code", "openid-1")
    wechat_peer.block_code("risky-code")
    wechat_peer.block_code("unregistered-risky-code")

    assert (await wechat.login("risky-code"))["errcode"] == 40226
    assert (await wechat.login("unregistered-risky-code"))["errcode"] == 40226


async def test_more_than_100_logins_a_minute_per_openid_is_45011(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, peer_clock: PeerClock
) -> None:
    for index in range(101):
        wechat_peer.register_login_code(f"code-{index}", "busy-openid")
    wechat_peer.register_login_code("other-user-code", "calm-openid")

    answers = [await wechat.login(f"code-{index}") for index in range(101)]
    other_user = await wechat.login("other-user-code")
    peer_clock.advance(60)
    next_minute = await wechat.login("code-100")

    assert all(answer.get("openid") == "busy-openid" for answer in answers[:100])
    assert answers[100]["errcode"] == 45011
    assert other_user["openid"] == "calm-openid"
    assert next_minute["openid"] == "busy-openid"


async def test_fault_switch_answers_minus_one(wechat_peer: ServedWeChatPeer, wechat: WeChatCaller) -> None:
    wechat_peer.register_login_code("login-code-1", "openid-1")
    wechat_peer.fail_next(1, path=JSCODE2SESSION_PATH)

    token_meanwhile = await wechat.stable_token()
    failed = await wechat.login("login-code-1")
    retried = await wechat.login("login-code-1")

    assert "access_token" in token_meanwhile
    assert failed == {"errcode": -1, "errmsg": "system error"}
    assert retried["openid"] == "openid-1"


# -- stable_token ----------------------------------------------------------------------------


async def test_stable_token_accepts_json_only(wechat: WeChatCaller) -> None:
    form = {"grant_type": "client_credential", "appid": TEST_WECHAT_APPID, "secret": TEST_WECHAT_SECRET}

    response = await wechat.http.post(STABLE_TOKEN_PATH, data=form)

    assert response.status_code == 200
    assert response.json()["errcode"] == 47001


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"grant_type": "authorization_code"}, 40002),
        ({"appid": "wx-other"}, 40013),
        ({"secret": "nope"}, 40125),
    ],
)
async def test_stable_token_checks_the_app(wechat: WeChatCaller, overrides: dict[str, str], errcode: int) -> None:
    assert (await wechat.stable_token(overrides=overrides))["errcode"] == errcode


async def test_normal_mode_returns_the_same_token_while_valid(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, peer_clock: PeerClock
) -> None:
    first = await wechat.stable_token()
    peer_clock.advance(1000)
    second = await wechat.stable_token()

    assert first["expires_in"] == 7200
    assert second["access_token"] == first["access_token"]
    assert second["expires_in"] == 6200
    assert wechat_peer.tokens_issued == 1
    assert wechat_peer.stable_token_calls == 2


async def test_token_rotates_in_its_last_300_seconds_with_both_valid_meanwhile(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, peer_clock: PeerClock
) -> None:
    old = await wechat.token()
    peer_clock.advance(7200 - 300)

    new = await wechat.token()
    wechat_peer.register_phone_code("phone-code-0", "13800138000")
    old_during_overlap = await wechat.phone(old, "phone-code-0")
    peer_clock.advance(299)
    wechat_peer.register_phone_code("phone-code-1", "13800138000")
    new_at_end_of_overlap = await wechat.phone(new, "phone-code-1")
    peer_clock.advance(1)
    wechat_peer.register_phone_code("phone-code-2", "13800138000")
    old_after_overlap = await wechat.phone(old, "phone-code-2")
    new_after_overlap = await wechat.phone(new, "phone-code-2")

    assert new != old
    assert wechat_peer.tokens_issued == 2
    assert old_during_overlap["errcode"] == 0
    assert new_at_end_of_overlap["errcode"] == 0
    assert old_after_overlap["errcode"] == 42001
    assert new_after_overlap["errcode"] == 0


async def test_force_refresh_revokes_the_old_token(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, peer_clock: PeerClock
) -> None:
    wechat_peer.register_phone_code("phone-code-1", "13800138000")
    old = await wechat.token()
    peer_clock.advance(60)

    new = await wechat.token(force_refresh=True)
    with_old = await wechat.phone(old, "phone-code-1")
    with_new = await wechat.phone(new, "phone-code-1")

    assert new != old
    assert with_old["errcode"] == 40001
    assert with_new["errcode"] == 0
    assert await wechat.token() == new


async def test_force_refresh_needs_30_seconds_between_calls_and_20_a_day(
    wechat: WeChatCaller, peer_clock: PeerClock
) -> None:
    # Noon in China: the twenty calls' ten minutes stay within one of WeChat's days (which start at
    # midnight UTC+8, 16:00 UTC, when a run on the wall clock would see the count start again).
    peer_clock.now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone(timedelta(hours=8))).timestamp()
    await wechat.token(force_refresh=True)
    too_soon = await wechat.stable_token(force_refresh=True)
    peer_clock.advance(30)
    for _ in range(19):
        assert "access_token" in await wechat.stable_token(force_refresh=True)
        peer_clock.advance(30)
    twenty_first = await wechat.stable_token(force_refresh=True)

    assert too_soon["errcode"] == 45011
    assert twenty_first["errcode"] == 45009


# -- getuserphonenumber ----------------------------------------------------------------------


async def test_phone_code_gives_the_phone_number(wechat_peer: ServedWeChatPeer, wechat: WeChatCaller) -> None:
    wechat_peer.register_phone_code("phone-code-1", "13800138000")
    token = await wechat.token()

    answer = await wechat.phone(token, "phone-code-1")

    assert answer["errcode"] == 0
    info = answer["phone_info"]
    assert info["phoneNumber"] == "13800138000"
    assert info["purePhoneNumber"] == "13800138000"
    assert info["countryCode"] == "86"
    assert info["watermark"]["appid"] == TEST_WECHAT_APPID
    assert isinstance(info["watermark"]["timestamp"], int)


async def test_phone_code_is_single_use_and_expires(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, peer_clock: PeerClock
) -> None:
    wechat_peer.register_phone_code("used-code", "13800138000")
    wechat_peer.register_phone_code("old-code", "13900139000")
    token = await wechat.token()

    await wechat.phone(token, "used-code")
    reused = await wechat.phone(token, "used-code")
    peer_clock.advance(300)
    expired = await wechat.phone(token, "old-code")
    unknown = await wechat.phone(token, "never-registered")

    assert reused["errcode"] == 40029
    assert expired["errcode"] == 40029
    assert unknown["errcode"] == 40029


async def test_phone_call_checks_the_access_token(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, peer_clock: PeerClock
) -> None:
    wechat_peer.register_phone_code("phone-code-1", "13800138000")
    token = await wechat.token()

    unknown = await wechat.phone("test-access-token-made-up", "phone-code-1")
    missing = await wechat.phone("", "phone-code-1")
    peer_clock.advance(7200)
    wechat_peer.register_phone_code("phone-code-2", "13800138000")
    expired = await wechat.phone(token, "phone-code-2")

    assert unknown["errcode"] == 40001
    assert missing["errcode"] == 41001
    assert expired["errcode"] == 42001


# -- Open Platform: qrconnect and sns/oauth2/access_token ----------------------------------------


def _oauth_apps(peer: ServedWeChatPeer) -> None:
    peer.register_oauth_app(TEST_WEB_APPID, TEST_WEB_SECRET, website=True, redirect_host="app.test")
    peer.register_oauth_app(TEST_MOBILE_APPID, TEST_MOBILE_SECRET, website=False)


def _qr_params(**overrides: str) -> dict[str, str]:
    return {
        "appid": TEST_WEB_APPID,
        "redirect_uri": "https://app.test/app/?from=qr",
        "response_type": "code",
        "scope": "snsapi_login",
        "state": "s-1",
    } | overrides


async def _exchange(wechat: WeChatCaller, oauth_code: str, **overrides: str) -> dict[str, Any]:
    params = {
        "appid": TEST_WEB_APPID,
        "secret": TEST_WEB_SECRET,
        "code": oauth_code,
        "grant_type": "authorization_code",
    } | overrides
    return WeChatCaller._answer(await wechat.http.get(OAUTH_TOKEN_PATH, params=params))


@pytest.mark.parametrize(
    ("overrides", "page"),
    [
        ({"appid": "wx-unknown"}, "参数错误"),
        ({"appid": TEST_MOBILE_APPID}, "参数错误"),  # a mobile app has no QR login
        ({"response_type": "token"}, "参数错误"),
        ({"scope": "snsapi_userinfo"}, "Scope 参数错误"),
        ({"redirect_uri": "https://evil.test/app/"}, "redirect_uri 参数错误"),
        ({"redirect_uri": "javascript:alert(1)"}, "redirect_uri 参数错误"),
    ],
)
async def test_qrconnect_refuses_with_an_error_page(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, overrides: dict[str, str], page: str
) -> None:
    _oauth_apps(wechat_peer)
    wechat_peer.scan_as(TEST_WEB_APPID, "web-openid")
    response = await wechat.http.get(QRCONNECT_PATH, params=_qr_params(**overrides))
    assert (response.status_code, "location" in response.headers) == (200, False)
    assert page in response.text


async def test_qrconnect_redirects_with_a_code_once_scanned_and_the_state_only_when_refused(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller
) -> None:
    _oauth_apps(wechat_peer)
    waiting = await wechat.http.get(QRCONNECT_PATH, params=_qr_params())
    assert waiting.status_code == 200
    assert "扫描二维码" in waiting.text
    wechat_peer.scan_as(TEST_WEB_APPID, "web-openid", "union-q")
    scanned = await wechat.http.get(QRCONNECT_PATH, params=_qr_params())
    assert scanned.status_code == 302
    target = httpx.URL(scanned.headers["location"])
    assert (target.host, target.path, target.params["from"], target.params["state"]) == (
        "app.test",
        "/app/",
        "qr",
        "s-1",
    )
    answer = await _exchange(wechat, target.params["code"])
    assert (answer["openid"], answer["unionid"], answer["scope"]) == ("web-openid", "union-q", "snsapi_login")
    assert answer["access_token"].startswith("test-sns-token-")
    assert (bool(answer["refresh_token"]), answer["expires_in"]) == (True, 7200)
    wechat_peer.scan_as(TEST_WEB_APPID, None)
    refused = httpx.URL((await wechat.http.get(QRCONNECT_PATH, params=_qr_params())).headers["location"])
    assert ("code" in refused.params, refused.params["state"]) == (False, "s-1")


async def test_oauth_code_is_single_use_per_app_and_expires(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, peer_clock: PeerClock
) -> None:
    _oauth_apps(wechat_peer)
    wechat_peer.register_oauth_code(TEST_WEB_APPID, "c-1", "web-openid")
    wechat_peer.register_oauth_code(TEST_WEB_APPID, "c-2", "web-openid")
    first = await _exchange(wechat, "c-1")
    assert first["openid"] == "web-openid"
    assert "unionid" not in first
    assert (await _exchange(wechat, "c-1"))["errcode"] == 40163
    other_app = await _exchange(wechat, "c-2", appid=TEST_MOBILE_APPID, secret=TEST_MOBILE_SECRET)
    assert other_app["errcode"] == 40029
    peer_clock.advance(300)
    assert (await _exchange(wechat, "c-2"))["errcode"] == 40029


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"grant_type": "client_credential"}, 40002),
        ({"appid": ""}, 41002),
        ({"secret": ""}, 41004),
        ({"appid": "wx-unknown"}, 40013),
        ({"secret": "wrong"}, 40125),
        ({"code": ""}, 41008),
    ],
)
async def test_oauth_exchange_checks_the_request(
    wechat_peer: ServedWeChatPeer, wechat: WeChatCaller, overrides: dict[str, str], errcode: int
) -> None:
    _oauth_apps(wechat_peer)
    wechat_peer.register_oauth_code(TEST_WEB_APPID, "c-ok", "web-openid")
    answer = await _exchange(wechat, "c-ok", **overrides)
    assert answer["errcode"] == errcode
    assert "rid:" in answer["errmsg"]
