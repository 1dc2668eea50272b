"""WeChat login on every client (mini program, website QR login, mobile app), one account per person
by unionid, against the local WeChat peer."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, sms_login
from tests.modules.account.erasure_flows import clear_cooldown
from tests.modules.auth.test_vendor_login import wechat_settings
from tests.peers.wechat import TEST_MOBILE_APPID, TEST_MOBILE_SECRET, TEST_WEB_APPID, TEST_WEB_SECRET
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog, LedgerEntry, User, WeChatAccount
from wardrobe.modules.auth.wechat_oauth import STATE_TTL_SECONDS, issue_state

REDIRECT = "http://app.test/app/"


def open_platform_settings(peer: Any) -> dict[str, object]:
    peer.register_oauth_app(TEST_WEB_APPID, TEST_WEB_SECRET, website=True, redirect_host="app.test")
    peer.register_oauth_app(TEST_MOBILE_APPID, TEST_MOBILE_SECRET, website=False)
    return {
        **wechat_settings(peer),
        "wechat_web_appid": TEST_WEB_APPID,
        "wechat_web_secret": TEST_WEB_SECRET,
        "wechat_web_redirect_uri": REDIRECT,
        "wechat_open_base": peer.base_url,
        "wechat_mobile_appid": TEST_MOBILE_APPID,
        "wechat_mobile_secret": TEST_MOBILE_SECRET,
    }


async def scan(api: Api, peer: Any, openid: str | None, unionid: str | None = None) -> tuple[str | None, str]:
    """Start a QR login, have ``openid`` scan it on the peer, and follow WeChat's redirect: the code
    and state the browser comes back with."""
    start = data(await api.client.get("/api/v1/auth/wechat/web/authorize"))
    peer.scan_as(TEST_WEB_APPID, openid, unionid)
    async with httpx.AsyncClient() as browser:
        page = await browser.get(start["url"].split("#", 1)[0])
    assert page.status_code == 302, page.text
    location = page.headers["location"]
    assert location.startswith(REDIRECT)
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [start["state"]]
    return (query["code"][0] if "code" in query else None), start["state"]


async def web_login(api: Api, code: str | None, state: str) -> httpx.Response:
    return await api.client.post("/api/v1/auth/login", json={"method": "wechat_web", "code": code, "state": state})


async def app_login(api: Api, peer: Any, code: str, openid: str, unionid: str | None) -> dict[str, Any]:
    peer.register_oauth_code(TEST_MOBILE_APPID, code, openid, unionid)
    answer: dict[str, Any] = data(
        await api.client.post("/api/v1/auth/login", json={"method": "wechat_app", "code": code})
    )
    return answer


async def miniprogram_login(api: Api, peer: Any, code: str, openid: str, unionid: str | None) -> dict[str, Any]:
    peer.register_login_code(code, openid, unionid)
    answer: dict[str, Any] = data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": code}))
    return answer


async def grants_of(api: Api, user_id: int) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        stmt = select(func.count()).select_from(LedgerEntry).where(LedgerEntry.user_id == user_id)
        return int(await db.scalar(stmt) or 0)


async def test_the_login_page_learns_what_is_configured(api_factory: Any, wechat_peer: Any) -> None:
    bare: Api = await api_factory()
    assert data(await bare.client.get("/api/v1/auth/methods")) == {
        "sms": True,
        "password": True,
        "wechat_miniprogram": False,
        "wechat_web": False,
        "wechat_app": False,
    }
    resp = await bare.client.get("/api/v1/auth/wechat/web/authorize")
    assert (resp.status_code, resp.json()["code"]) == (403, "FEATURE_UNAVAILABLE")
    resp = await bare.client.post("/api/v1/auth/login", json={"method": "wechat_app", "code": "x"})
    assert resp.json()["code"] == "FEATURE_UNAVAILABLE"
    full: Api = await api_factory(**open_platform_settings(wechat_peer))
    methods = data(await full.client.get("/api/v1/auth/methods"))
    assert methods["wechat_web"] is methods["wechat_app"] is methods["wechat_miniprogram"] is True
    start = data(await full.client.get("/api/v1/auth/wechat/web/authorize"))
    url = urlsplit(start["url"])
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{wechat_peer.base_url}/connect/qrconnect"
    assert url.fragment == "wechat_redirect"
    assert query == {
        "appid": [TEST_WEB_APPID],
        "redirect_uri": [REDIRECT],
        "response_type": ["code"],
        "scope": ["snsapi_login"],
        "state": [start["state"]],
    }
    assert len(start["state"]) <= 128  # WeChat's limit
    assert start["expires_in"] == STATE_TTL_SECONDS


async def test_one_person_is_one_account_on_every_client(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**open_platform_settings(wechat_peer))
    first = await miniprogram_login(api, wechat_peer, "mp-1", "mp-openid-1", "union-1")
    assert first["is_new_user"] is True
    code, state = await scan(api, wechat_peer, "web-openid-1", "union-1")
    web = data(await web_login(api, code, state))
    assert (web["is_new_user"], web["user"]["id"]) == (False, first["user"]["id"])
    mobile = await app_login(api, wechat_peer, "app-code-1", "app-openid-1", "union-1")
    assert (mobile["is_new_user"], mobile["user"]["id"]) == (False, first["user"]["id"])
    # One quota: what the mini program's account holds is what the web session sees.
    headers = {"Authorization": f"Bearer {web['access_token']}"}
    quota = data(await api.client.get("/api/v1/billing/quota", headers=headers))
    assert quota["balance"] == api.settings.free_grant_quota
    assert await grants_of(api, first["user"]["id"]) == 1
    # The next logins go straight to the same account by their own openids.
    again = await app_login(api, wechat_peer, "app-code-2", "app-openid-1", "union-1")
    assert again["user"]["id"] == first["user"]["id"]
    # Another person, and an app not bound to the platform (no unionid), are other accounts.
    other = await app_login(api, wechat_peer, "app-code-3", "app-openid-2", "union-2")
    unbound = await app_login(api, wechat_peer, "app-code-4", "app-openid-3", None)
    assert len({first["user"]["id"], other["user"]["id"], unbound["user"]["id"]}) == 3


async def test_the_web_first_then_the_mini_program_joins_it(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**open_platform_settings(wechat_peer))
    code, state = await scan(api, wechat_peer, "web-openid-9", "union-9")
    web = data(await web_login(api, code, state))
    assert web["is_new_user"] is True
    mini = await miniprogram_login(api, wechat_peer, "mp-9", "mp-openid-9", "union-9")
    assert (mini["is_new_user"], mini["user"]["id"]) == (False, web["user"]["id"])
    async with unit_of_work(api.infra.session_factory) as db:
        user = await db.get(User, web["user"]["id"])
        assert user is not None
        # The mini program's openid is on the account, where WeChat Pay (JSAPI) needs it.
        assert user.wechat_openid == "mp-openid-9"


async def test_first_logins_racing_on_three_clients_make_one_account(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**open_platform_settings(wechat_peer))
    logins = []
    for i in range(3):
        wechat_peer.register_login_code(f"race-mp-{i}", "race-mp-openid", "race-union")
        wechat_peer.register_oauth_code(TEST_MOBILE_APPID, f"race-app-{i}", "race-app-openid", "race-union")
        logins.append(api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": f"race-mp-{i}"}))
        logins.append(api.client.post("/api/v1/auth/login", json={"method": "wechat_app", "code": f"race-app-{i}"}))
    answers = [data(resp) for resp in await asyncio.gather(*logins)]
    assert len({a["user"]["id"] for a in answers}) == 1
    assert sum(a["is_new_user"] for a in answers) == 1
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(func.count()).select_from(WeChatAccount)) == 1
        assert await db.scalar(select(func.count()).select_from(User).where(User.wechat_unionid == "race-union")) == 1
    assert await grants_of(api, answers[0]["user"]["id"]) == 1


async def test_a_state_works_once_and_only_if_we_issued_it(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**open_platform_settings(wechat_peer))
    code, state = await scan(api, wechat_peer, "web-openid-s", "union-s")
    data(await web_login(api, code, state))
    # A second callback with the same state (a replayed or forged redirect) is refused.
    code2, _ = await scan(api, wechat_peer, "web-openid-s", "union-s")
    replay = await web_login(api, code2, state)
    assert (replay.status_code, replay.json()["code"]) == (400, "AUTH_CODE_INVALID")
    assert replay.json()["data"][0]["field"] == "state"
    secret = api.settings.jwt_secret.get_secret_value()
    for bad in (
        "made-up-state",
        issue_state("another-deployments-secret-0123456789abcdef"),
        issue_state(secret, now=time.time() - STATE_TTL_SECONDS - 1),
        state[:-2] + ("AA" if not state.endswith("AA") else "BB"),
    ):
        resp = await web_login(api, code2, bad)
        assert (resp.status_code, resp.json()["data"][0]["field"]) == (400, "state"), bad
    # The code was not spent by those refusals: WeChat was never asked.
    _, fresh_state = await scan(api, wechat_peer, "web-openid-s", "union-s")
    assert data(await web_login(api, code2, fresh_state))["is_new_user"] is False


async def test_what_wechat_refuses_reaches_the_client_as_our_codes(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**open_platform_settings(wechat_peer))
    code, state = await scan(api, wechat_peer, None)  # the user refused on the phone: no code
    assert code is None
    resp = await web_login(api, "", state)
    assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED")
    await app_login(api, wechat_peer, "once", "app-openid-o", "union-o")
    used = await api.client.post("/api/v1/auth/login", json={"method": "wechat_app", "code": "once"})  # 40163
    unknown = await api.client.post("/api/v1/auth/login", json={"method": "wechat_app", "code": "never"})  # 40029
    assert [r.json()["code"] for r in (used, unknown)] == ["AUTH_CODE_INVALID", "AUTH_CODE_INVALID"]
    # A web code is not the mobile app's: WeChat answers 40029 to the wrong app.
    web_code, _ = await scan(api, wechat_peer, "web-openid-o", "union-o")
    cross = await api.client.post("/api/v1/auth/login", json={"method": "wechat_app", "code": web_code})
    assert cross.json()["code"] == "AUTH_CODE_INVALID"
    wrong: Api = await api_factory(**{**open_platform_settings(wechat_peer), "wechat_mobile_secret": "not-the-secret"})
    wechat_peer.register_oauth_code(TEST_MOBILE_APPID, "fine", "app-openid-f", "union-f")
    resp = await wrong.client.post("/api/v1/auth/login", json={"method": "wechat_app", "code": "fine"})
    assert (resp.status_code, resp.json()["code"]) == (503, "DEPENDENCY_UNAVAILABLE")
    assert "secret" not in resp.text


async def test_a_web_only_account_proves_itself_with_a_fresh_qr_login(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**open_platform_settings(wechat_peer))
    code, state = await scan(api, wechat_peer, "web-openid-d", "union-d")
    login = data(await web_login(api, code, state))
    headers = {"Authorization": f"Bearer {login['access_token']}"}

    async def delete(wechat_code: str, app: str) -> httpx.Response:
        body = {"wechat_code": wechat_code, "wechat_app": app}
        return await api.client.request("DELETE", "/api/v1/users/me", json=body, headers=headers)

    someone_else, _ = await scan(api, wechat_peer, "web-openid-x", "union-x")
    assert (await delete(someone_else or "", "web")).json()["code"] == "AUTH_CODE_INVALID"
    wechat_peer.register_login_code("mp-not-linked", "mp-openid-d", "union-d")
    not_linked = await delete("mp-not-linked", "miniprogram")
    assert (not_linked.status_code, not_linked.json()["data"][0]["field"]) == (422, "wechat_code")
    own, _ = await scan(api, wechat_peer, "web-openid-d", "union-d")
    assert (await delete(own or "", "web")).status_code == 200
    # The identity went with the account: the same WeChat user now starts afresh.
    code, state = await scan(api, wechat_peer, "web-openid-d", "union-d")
    again = data(await web_login(api, code, state))
    assert again["is_new_user"] is True
    assert again["user"]["id"] != login["user"]["id"]


async def _link_code(api: Api, user: Session) -> str:
    await clear_cooldown(api, user.phone)
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"purpose": "link_wechat"}, headers=user.headers)
    return str(data(resp)["debug_code"])


async def _link(api: Api, user: Session, **body: Any) -> httpx.Response:
    return await api.client.post("/api/v1/auth/wechat/link", json=body, headers=user.headers)


async def test_an_sms_account_links_its_wechat_with_fresh_proof(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**open_platform_settings(wechat_peer))
    user = await sms_login(api.client)
    wechat_peer.register_login_code("link-1", "mp-openid-l", "union-l")
    # No proof, or a wrong one: refused, and the WeChat code is not spent.
    assert (await _link(api, user, link_code="link-1")).json()["code"] == "VALIDATION_FAILED"
    wrong = await _link(api, user, link_code="link-1", code="000000")
    assert (wrong.status_code, wrong.json()["code"]) == (400, "AUTH_CODE_INVALID")
    assert wechat_peer.code2session_calls == 0
    linked = await _link(api, user, link_code="link-1", code=await _link_code(api, user))
    assert data(linked) == {"app": "miniprogram"}
    # The mini program's and the website's logins of that person now land in the SMS account.
    mini = await miniprogram_login(api, wechat_peer, "mp-after", "mp-openid-l", "union-l")
    assert (mini["is_new_user"], mini["user"]["id"]) == (False, user.user["id"])
    code, state = await scan(api, wechat_peer, "web-openid-l", "union-l")
    assert data(await web_login(api, code, state))["user"]["id"] == user.user["id"]
    async with unit_of_work(api.infra.session_factory) as db:
        row = await db.get(User, user.user["id"])
        assert row is not None
        assert (row.wechat_openid, row.wechat_unionid) == ("mp-openid-l", "union-l")
        audits = await db.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "user.wechat_linked")
        )
        assert audits == 1


async def test_a_wechat_user_with_its_own_account_is_not_linked_to_another(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**open_platform_settings(wechat_peer))
    theirs = await miniprogram_login(api, wechat_peer, "mp-own", "mp-openid-t", "union-t")
    user = await sms_login(api.client)
    wechat_peer.register_login_code("link-t", "mp-openid-t", "union-t")
    taken = await _link(api, user, link_code="link-t", code=await _link_code(api, user))
    assert (taken.status_code, taken.json()["code"]) == (409, "WECHAT_ALREADY_BOUND")
    # An account that has a WeChat user already takes no second one of that platform.
    wechat_peer.register_login_code("link-u", "mp-openid-u", "union-u")
    data(await _link(api, user, link_code="link-u", code=await _link_code(api, user)))
    wechat_peer.register_oauth_code(TEST_MOBILE_APPID, "app-v", "app-openid-v", "union-v")
    other = await _link(api, user, link_code="app-v", link_app="app", code=await _link_code(api, user))
    assert other.json()["code"] == "WECHAT_ALREADY_BOUND"
    async with unit_of_work(api.infra.session_factory) as db:
        mine = await db.get(User, user.user["id"])
        assert mine is not None
        assert (mine.wechat_openid, mine.wechat_unionid) == ("mp-openid-u", "union-u")
        still = await db.get(User, theirs["user"]["id"])
        assert still is not None
        assert still.wechat_openid == "mp-openid-t"
