"""WeChat QR login in the web app, in headless Chromium: the browser really goes to the WeChat
peer's QR page and is sent back with code and state."""

from __future__ import annotations

from typing import Any

from tests.fixtures.auth import data
from tests.peers.wechat import OAUTH_TOKEN_PATH, TEST_MOBILE_APPID, TEST_WEB_APPID
from tests.webapp.conftest import SESSION_KEY, AppBrowser, AppServer


def _signed_out(browser: AppBrowser, server: AppServer) -> None:
    browser.open_app(server.url)
    browser.script("localStorage.clear(); sessionStorage.clear();")
    browser.driver.refresh()
    browser.find("login-form")


async def test_a_qr_login_signs_in_the_same_account_as_the_mobile_app(
    browser: AppBrowser, app_server: AppServer, wechat_peer: Any
) -> None:
    browser.severe_logs()
    wechat_peer.register_oauth_app(
        TEST_WEB_APPID, "wechat-web-secret-not-real", website=True, redirect_host="127.0.0.1"
    )
    wechat_peer.register_oauth_app(TEST_MOBILE_APPID, "wechat-mobile-secret-not-real", website=False)
    _signed_out(browser, app_server)
    wechat_peer.scan_as(TEST_WEB_APPID, "web-openid-b", "union-b")
    browser.click("wechat-login")
    browser.find("nav")  # back from WeChat, signed in
    assert browser.script("return location.search") == ""  # the code and state are not left in the bar
    assert browser.script("return location.pathname") == "/app/"
    kept = browser.stored_session()
    # The mobile app's user with the same unionid is this very account.
    wechat_peer.register_oauth_code(TEST_MOBILE_APPID, "app-code-b", "app-openid-b", "union-b")
    mobile = data(
        await app_server.client.post("/api/v1/auth/login", json={"method": "wechat_app", "code": "app-code-b"})
    )
    assert (mobile["is_new_user"], mobile["user"]["id"]) == (False, kept["user"]["id"])
    assert browser.severe_logs() == []


async def test_a_callback_this_page_did_not_start_is_refused_before_the_api_is_asked(
    browser: AppBrowser, app_server: AppServer, wechat_peer: Any
) -> None:
    wechat_peer.register_oauth_app(
        TEST_WEB_APPID, "wechat-web-secret-not-real", website=True, redirect_host="127.0.0.1"
    )
    wechat_peer.register_oauth_code(TEST_WEB_APPID, "attackers-code", "attacker-openid", "attacker-union")
    start = data(await app_server.client.get("/api/v1/auth/wechat/web/authorize"))  # the attacker's own state
    _signed_out(browser, app_server)
    browser.driver.get(f"{app_server.url}/app/?code=attackers-code&state={start['state']}")
    assert "不是从本页发起" in browser.text("login-error")
    assert SESSION_KEY not in browser.local_storage()
    assert wechat_peer.calls[OAUTH_TOKEN_PATH] == 0
    # The user who refused on the phone comes back with the state only.
    wechat_peer.scan_as(TEST_WEB_APPID, None)
    browser.click("wechat-login")
    # Waited for: until the round trip through WeChat ends, the old page's notice is still there.
    browser.wait(lambda _: "取消" in browser.text("login-error"), message="no cancelled notice")
    assert SESSION_KEY not in browser.local_storage()
