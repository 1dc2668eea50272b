"""Login through the real vendor protocols: Tencent Cloud SMS and WeChat, against local peers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import data, new_phone, sms_login
from tests.peers.tencent_cloud import (
    TEST_NOTICE_TEMPLATE_ID,
    TEST_SDK_APP_ID,
    TEST_SECRET_ID,
    TEST_SECRET_KEY,
    TEST_SIGN_NAME,
    TEST_TEMPLATE_ID,
)
from tests.peers.wechat import TEST_WECHAT_APPID, TEST_WECHAT_SECRET
from wardrobe.core.db import unit_of_work
from wardrobe.core.ratelimit import per_seconds
from wardrobe.models import User


def tencent_sms_settings(peer: Any, **extra: object) -> dict[str, object]:
    return {
        "sms_backend": "tencent",
        "tencent_sms_phone_changed_template_id": TEST_NOTICE_TEMPLATE_ID,
        "sms_debug_codes": False,
        "tencent_secret_id": TEST_SECRET_ID,
        "tencent_secret_key": TEST_SECRET_KEY,
        "tencent_sms_endpoint": peer.host_port,
        "tencent_sms_scheme": "http",
        "tencent_sms_sdk_app_id": TEST_SDK_APP_ID,
        "tencent_sms_sign_name": TEST_SIGN_NAME,
        "tencent_sms_template_id": TEST_TEMPLATE_ID,
        **extra,
    }


def wechat_settings(peer: Any) -> dict[str, object]:
    return {
        "wechat_appid": TEST_WECHAT_APPID,
        "wechat_secret": TEST_WECHAT_SECRET,
        "wechat_api_base": peer.base_url,
    }


async def test_sms_login_through_tencent_cloud(api_factory: Any, tencent_peer: Any) -> None:
    api: Api = await api_factory(**tencent_sms_settings(tencent_peer))
    phone = new_phone()
    body = data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": phone}))
    assert "debug_code" not in body
    params = tencent_peer.last_params_for("+86" + phone)
    assert params is not None
    code, minutes = params
    assert minutes == "5"
    resp = await api.client.post("/api/v1/auth/login", json={"method": "sms", "phone": phone, "code": code})
    assert data(resp)["is_new_user"] is True


async def test_vendor_per_number_limit_becomes_429(api_factory: Any, tencent_peer: Any) -> None:
    api: Api = await api_factory(**tencent_sms_settings(tencent_peer))
    phone = new_phone()
    data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": phone}))
    # Our own cooldown is cleared; Tencent's 30-second limit still answers inside SendStatusSet.
    await api.infra.limiter.clear([per_seconds(1, 60)], "sms-cooldown", phone)
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert (resp.status_code, resp.json()["code"]) == (429, "RATE_LIMITED")
    assert "Retry-After" in resp.headers


async def test_wrong_tencent_key_is_a_dependency_error_not_a_leak(api_factory: Any, tencent_peer: Any) -> None:
    api: Api = await api_factory(**tencent_sms_settings(tencent_peer, tencent_secret_key="not-the-key"))
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone()})
    body = resp.json()
    assert (resp.status_code, body["code"]) == (503, "DEPENDENCY_UNAVAILABLE")
    assert "AuthFailure" not in resp.text
    assert "tencent" not in resp.text.lower()


async def test_wechat_login_registers_once_per_openid(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**wechat_settings(wechat_peer))
    wechat_peer.register_login_code("code-1", "openid-a", "unionid-a")
    wechat_peer.register_login_code("code-2", "openid-a", "unionid-a")
    first = data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "code-1"}))
    second = data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "code-2"}))
    assert first["is_new_user"] is True
    assert second["is_new_user"] is False
    assert first["user"]["id"] == second["user"]["id"]
    assert "session_key" not in str(first)
    assert first["user"]["phone_masked"] is None


async def test_wechat_bad_codes(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**wechat_settings(wechat_peer))
    resp = await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "never-issued"})
    assert (resp.status_code, resp.json()["code"]) == (400, "AUTH_CODE_INVALID")
    wechat_peer.register_login_code("once", "openid-b")
    data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "once"}))
    resp = await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "once"})
    assert resp.json()["code"] == "AUTH_CODE_INVALID"
    wechat_peer.register_login_code("risky", "openid-c")
    wechat_peer.block_code("risky")
    resp = await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "risky"})
    assert (resp.status_code, resp.json()["code"]) == (403, "ACCOUNT_DISABLED")


async def test_wechat_busy_is_retried_once_then_503(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**wechat_settings(wechat_peer))
    wechat_peer.register_login_code("busy-once", "openid-d")
    wechat_peer.fail_next(1, path="/sns/jscode2session")
    data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "busy-once"}))
    wechat_peer.register_login_code("busy-twice", "openid-e")
    wechat_peer.fail_next(2, path="/sns/jscode2session")
    resp = await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "busy-twice"})
    assert (resp.status_code, resp.json()["code"]) == (503, "DEPENDENCY_UNAVAILABLE")


async def test_wechat_phone_binding_and_the_policy_for_taken_phones(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**wechat_settings(wechat_peer))
    wechat_peer.register_login_code("login-x", "openid-x")
    body = data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "login-x"}))
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    phone = new_phone()
    wechat_peer.register_phone_code("phone-1", phone)
    wechat_peer.register_login_code("again-x", "openid-x")  # wx.login again: proof it is the same user
    body = {"code": "phone-1", "wechat_code": "again-x"}
    user = data(await api.client.post("/api/v1/auth/wechat/phone", json=body, headers=headers))
    assert user["phone_masked"] == phone[:3] + "****" + phone[-4:]

    taken = (await sms_login(api.client)).phone
    wechat_peer.register_login_code("login-y", "openid-y")
    body = data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "login-y"}))
    headers_y = {"Authorization": f"Bearer {body['access_token']}"}
    wechat_peer.register_phone_code("phone-2", taken)
    wechat_peer.register_login_code("again-y", "openid-y")
    body = {"code": "phone-2", "wechat_code": "again-y"}
    resp = await api.client.post("/api/v1/auth/wechat/phone", json=body, headers=headers_y)
    assert (resp.status_code, resp.json()["code"]) == (409, "PHONE_ALREADY_BOUND")
    async with unit_of_work(api.infra.session_factory) as db:
        owners = (await db.scalars(select(User).where(User.phone == taken))).all()
    assert len(owners) == 1
    assert owners[0].wechat_openid is None


async def test_wechat_login_unavailable_when_not_configured(api: Api) -> None:
    resp = await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "x"})
    assert (resp.status_code, resp.json()["code"]) == (403, "FEATURE_UNAVAILABLE")
