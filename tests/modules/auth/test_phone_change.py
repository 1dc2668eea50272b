"""Moving an account's phone needs fresh proof of the current owner; a stolen access token is not
enough to re-route the account's SMS login (the takeover an outside review found)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, new_phone, request_code, sms_login
from tests.fixtures.tasks import wait_until
from tests.modules.auth.test_vendor_login import tencent_sms_settings, wechat_settings
from tests.peers.tencent_cloud import TEST_NOTICE_TEMPLATE_ID
from wardrobe.core.db import unit_of_work
from wardrobe.core.metrics import SMS_SENT
from wardrobe.core.ratelimit import per_seconds
from wardrobe.models import AuditLog, User
from wardrobe.modules.auth import notices
from wardrobe.modules.auth.sms_senders import ConsoleSmsSender, SmsNotice

PASSWORD = "owner-Secret-42"


async def _bind_code(api: Api, phone: str) -> str:
    return await request_code(api.client, phone, "bind_phone")


async def _own_code(api: Api, user: Session, purpose: str = "change_phone") -> str:
    """A code sent to the account's own phone (needs the bearer token; no phone in the body)."""
    resp = await api.client.post("/api/v1/auth/sms-codes", json={"purpose": purpose}, headers=user.headers)
    code: str = data(resp)["debug_code"]
    return code


async def _move(api: Api, user: Session, phone: str, code: str | None = None, **proof: str) -> httpx.Response:
    body = {"phone": phone, "code": code or await _bind_code(api, phone), **proof}
    return await api.client.put("/api/v1/auth/phone", json=body, headers=user.headers)


async def _forget_cooldown(api: Api, phone: str) -> None:
    """The login code just sent to ``phone`` started its 60 s cooldown; a test does not wait it out."""
    await api.infra.limiter.clear([per_seconds(1, api.settings.sms_cooldown_seconds)], "sms-cooldown", phone)


async def _phone_of(api: Api, user_id: int) -> str | None:
    async with unit_of_work(api.infra.session_factory) as db:
        phone: str | None = await db.scalar(select(User.phone).where(User.id == user_id))
    return phone


async def test_a_stolen_token_alone_cannot_move_the_phone(api: Api) -> None:
    victim = await sms_login(api.client)
    data(await api.client.put("/api/v1/auth/password", json={"new_password": PASSWORD}, headers=victim.headers))
    attacker_phone = new_phone()
    code = await _bind_code(api, attacker_phone)  # the attacker's own number: the code is theirs

    no_proof = await _move(api, victim, attacker_phone, code)
    assert (no_proof.status_code, no_proof.json()["code"]) == (403, "REAUTHENTICATION_REQUIRED")
    wrong_password = await _move(api, victim, attacker_phone, code, password="guess-Secret-1")
    assert (wrong_password.status_code, wrong_password.json()["code"]) == (401, "AUTH_INVALID_CREDENTIALS")
    wrong_code = await _move(api, victim, attacker_phone, code, current_code="000000")
    assert (wrong_code.status_code, wrong_code.json()["code"]) == (400, "AUTH_CODE_INVALID")

    assert await _phone_of(api, victim.user["id"]) == victim.phone
    # The attacker's own number still opens only the attacker's own, new account.
    await _forget_cooldown(api, attacker_phone)
    mine = await sms_login(api.client, attacker_phone)
    assert mine.user["id"] != victim.user["id"]


async def test_change_phone_codes_go_only_to_the_accounts_own_phone(api: Api) -> None:
    user = await sms_login(api.client)
    anonymous = await api.client.post("/api/v1/auth/sms-codes", json={"phone": user.phone, "purpose": "change_phone"})
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "AUTH_REQUIRED")
    elsewhere = await api.client.post(
        "/api/v1/auth/sms-codes", json={"phone": new_phone(), "purpose": "change_phone"}, headers=user.headers
    )
    assert (elsewhere.status_code, elsewhere.json()["data"]) == (
        422,
        [{"field": "phone", "message": "应为本账号绑定的手机号"}],  # zh unless Accept-Language asks for en
    )
    no_phone = await api.client.post(
        "/api/v1/auth/sms-codes", json={"purpose": "login"}, headers={"Accept-Language": "en"}
    )
    assert no_phone.json()["data"] == [{"field": "phone", "message": "is required"}]
    # The cooldown of the login code just sent would refuse the next code: free it.
    await _forget_cooldown(api, user.phone)
    code = await _own_code(api, user)
    sender = api.infra.sms_sender
    assert isinstance(sender, ConsoleSmsSender)
    assert sender.last_code_for("+86" + user.phone) == code


async def test_a_code_from_the_current_phone_moves_it_ends_other_sessions_and_tells_the_old_number(
    api: Api,
) -> None:
    owner = await sms_login(api.client)
    data(await api.client.put("/api/v1/auth/password", json={"new_password": PASSWORD}, headers=owner.headers))
    login = {"method": "password", "phone": owner.phone, "password": PASSWORD}
    other = data(await api.client.post("/api/v1/auth/login", json=login))
    other_headers = {"Authorization": f"Bearer {other['access_token']}"}
    await _forget_cooldown(api, owner.phone)
    new = new_phone()

    moved = data(await _move(api, owner, new, current_code=await _own_code(api, owner)))
    assert moved["phone_masked"] == f"{new[:3]}****{new[-4:]}"
    assert await _phone_of(api, owner.user["id"]) == new
    gone = await api.client.get("/api/v1/users/me", headers=other_headers)
    assert (gone.status_code, gone.json()["code"]) == (401, "AUTH_SESSION_REVOKED")
    data(await api.client.get("/api/v1/users/me", headers=owner.headers))  # the session that moved it stays

    sender = api.infra.sms_sender
    assert isinstance(sender, ConsoleSmsSender)

    async def told() -> bool:
        return bool(sender.notices)

    await wait_until(told)
    assert sender.notices == [("+86" + owner.phone, SmsNotice.PHONE_CHANGED, [f"{new[:3]}****{new[-4:]}"])]
    async with unit_of_work(api.infra.session_factory) as db:
        audit = await db.scalar(select(AuditLog).where(AuditLog.action == "user.phone_changed"))
    assert audit is not None
    assert audit.target_id == str(owner.user["id"])
    assert owner.phone not in (audit.reason or "")
    assert audit.after == {"phone": f"{new[:3]}****{new[-4:]}"}
    assert audit.before is not None
    assert owner.phone not in str(audit.before)

    # The old number now opens a new, empty account.
    await _forget_cooldown(api, owner.phone)
    again = await sms_login(api.client, owner.phone)
    assert again.user["id"] != owner.user["id"]


async def test_a_wechat_user_proves_itself_with_a_fresh_wx_login_code(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**wechat_settings(wechat_peer))
    wechat_peer.register_login_code("login-p", "openid-p")
    body = data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "login-p"}))
    user = Session("", body["access_token"], body["refresh_token"], body["user"])
    first = new_phone()
    code = await _bind_code(api, first)
    resp = await _move(api, user, first, code)  # a token alone is not enough, even for a first phone
    assert (resp.status_code, resp.json()["code"]) == (403, "REAUTHENTICATION_REQUIRED")
    wechat_peer.register_login_code("someone-else", "openid-other")
    resp = await _move(api, user, first, code, wechat_code="someone-else")
    assert (resp.status_code, resp.json()["code"]) == (400, "AUTH_CODE_INVALID")
    wechat_peer.register_login_code("fresh-p", "openid-p")
    data(await _move(api, user, first, code, wechat_code="fresh-p"))
    assert await _phone_of(api, user.user["id"]) == first

    data(await api.client.put("/api/v1/auth/password", json={"new_password": PASSWORD}, headers=user.headers))
    second = new_phone()
    assert data(await _move(api, user, second, password=PASSWORD))["phone_masked"].endswith(second[-4:])


async def test_wechat_phone_binding_needs_the_same_proof(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**wechat_settings(wechat_peer))
    owner = await sms_login(api.client)
    taken_over = new_phone()
    wechat_peer.register_phone_code("phone-w", taken_over)
    resp = await api.client.post("/api/v1/auth/wechat/phone", json={"code": "phone-w"}, headers=owner.headers)
    assert (resp.status_code, resp.json()["code"]) == (403, "REAUTHENTICATION_REQUIRED")
    assert await _phone_of(api, owner.user["id"]) == owner.phone


async def test_the_old_number_is_told_through_tencent_sms_once_its_30_s_limit_allows(
    api_factory: Any, tencent_peer: Any, peer_clock: Any, monkeypatch: Any
) -> None:
    """The owner just got a code, so Tencent refuses a second SMS to that number for 30 s: the
    notice waits and goes out once the peer's clock has moved past the limit."""
    monkeypatch.setattr(notices, "NOTICE_RETRY_SECONDS", 0.2)
    api: Api = await api_factory(**tencent_sms_settings(tencent_peer))
    owner_phone = new_phone()
    data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": owner_phone}))
    login_code, _ = tencent_peer.last_params_for("+86" + owner_phone)
    body = data(
        await api.client.post("/api/v1/auth/login", json={"method": "sms", "phone": owner_phone, "code": login_code})
    )
    owner = Session(owner_phone, body["access_token"], body["refresh_token"], body["user"])
    data(await api.client.put("/api/v1/auth/password", json={"new_password": PASSWORD}, headers=owner.headers))
    new = new_phone()
    data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": new, "purpose": "bind_phone"}))
    bind_code, _ = tencent_peer.last_params_for("+86" + new)
    moved = {"phone": new, "code": bind_code, "password": PASSWORD}
    deferred = SMS_SENT.labels("tencent", "notice_deferred")
    before = deferred._value.get()
    data(await api.client.put("/api/v1/auth/phone", json=moved, headers=owner.headers))

    async def refused_once() -> bool:
        return bool(deferred._value.get() > before)

    await wait_until(refused_once)
    assert not any(m.template_id == TEST_NOTICE_TEMPLATE_ID for m in tencent_peer.sent)
    peer_clock.advance(31)

    async def told() -> bool:
        return any(m.template_id == TEST_NOTICE_TEMPLATE_ID for m in tencent_peer.sent)

    await wait_until(told)
    [notice] = [m for m in tencent_peer.sent if m.template_id == TEST_NOTICE_TEMPLATE_ID]
    assert notice.phone == "+86" + owner_phone
    assert notice.params == (f"{new[:3]}****{new[-4:]}",)
