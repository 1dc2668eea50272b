"""WeChat Pay end to end through the HTTP API against the local WeChat Pay peer: buying a
quota pack (Native) and a membership (JSAPI), duplicate and forged notifications, a database that
fails mid-way, missed notifications repaired by reconciliation, and refunds that take the quota
back exactly once and never exceed what was paid."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from tests.conftest import Api, Backend
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.gate import TcpGate
from tests.fixtures.realtime import live
from tests.fixtures.tasks import OWN_PROCESSES, free_port, spawn_worker, stop_workers, wait_until, worker_env
from tests.peers.wechatpay import TEST_APPID, TEST_MCHID
from tests.peers.wechatpay_fixtures import ServedWeChatPayPeer, WeChatPaySettings
from tests.peers.wechatpay_notify import KeyPair, Notice, post_notice, rsa_verify
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, Order, PaymentNotification, Refund, User
from wardrobe.models.base import utcnow
from wardrobe.modules.payments.reconciliation import reconcile_once
from wardrobe.modules.payments.refunds import push_refund
from wardrobe.seed import seed_plans

FAIL = {"code": "FAIL", "message": "失败"}
NOTIFY_PATH = "/api/v1/payments/wechat/notify"


@dataclass
class Shop:
    api: Api
    base_url: str  # where the app listens on loopback (the peer's notifications arrive here)


async def open_shop(api_factory: Any, overrides: dict[str, Any]) -> Api:
    api: Api = await api_factory(**overrides)
    async with unit_of_work(api.infra.session_factory) as db:
        await seed_plans(db)
    return api


@pytest.fixture
async def shop(api_factory: Any, wechatpay_settings: WeChatPaySettings) -> AsyncIterator[Shop]:
    port = free_port()
    api = await open_shop(api_factory, wechatpay_settings(port))
    async with live(api.app, port) as base_url:
        yield Shop(api, base_url)


async def buy(api: Api, user: Session, sku: str, channel: str) -> dict[str, Any]:
    resp = await api.client.post("/api/v1/billing/orders", json={"sku": sku, "channel": channel}, headers=user.headers)
    order: dict[str, Any] = data(resp, 201)
    assert order["status"] == "pending"
    return order


async def quota_of(api: Api, user: Session) -> dict[str, Any]:
    answer: dict[str, Any] = data(await api.client.get("/api/v1/billing/quota", headers=user.headers))
    return answer


async def my_order(api: Api, user: Session, order_no: str) -> dict[str, Any]:
    answer: dict[str, Any] = data(await api.client.get(f"/api/v1/billing/orders/{order_no}", headers=user.headers))
    return answer


async def ledger(api: Api, user_id: int, *, ref: str | None = None, kind: str | None = None) -> list[int]:
    """The amounts of the user's ledger entries with this ref and/or kind."""
    stmt = select(LedgerEntry.amount).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)
    if ref is not None:
        stmt = stmt.where(LedgerEntry.ref == ref)
    if kind is not None:
        stmt = stmt.where(LedgerEntry.kind == kind)
    async with unit_of_work(api.infra.session_factory) as db:
        return list(await db.scalars(stmt))


async def inbox(api: Api) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        return int(await db.scalar(select(func.count()).select_from(PaymentNotification)) or 0)


def flip_ciphertext_bit(peer: ServedWeChatPayPeer, notice: Notice) -> Notice:
    """The same notification with one bit of its ciphertext flipped, correctly signed again."""
    envelope = json.loads(notice.body)
    sealed = bytearray(base64.b64decode(envelope["resource"]["ciphertext"]))
    sealed[5] ^= 0x10
    envelope["resource"]["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    body = json.dumps(envelope, ensure_ascii=False).encode()
    return peer.sign_notice(body, url=notice.url, event_id=notice.event_id)


def bad_signatures() -> float:
    value = REGISTRY.get_sample_value("wardrobe_payment_events_total", {"provider": "wechat", "event": "bad_signature"})
    return value or 0.0


def fail_answer(status: int | None, body: bytes) -> tuple[int | None, Any]:
    return status, json.loads(body) if body else None


# -- buying ------------------------------------------------------------------------------------


async def test_a_quota_pack_by_native_and_a_membership_by_jsapi_are_paid_and_fulfilled(
    shop: Shop, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    api = shop.api
    user = await sms_login(api.client)
    uid = user.user["id"]
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(User).where(User.id == uid).values(wechat_openid=f"o-test-e2e-{uid}"))
    before = await quota_of(api, user)
    assert before["membership"] is None

    pack = await buy(api, user, "pack-100", "wechat_native")
    at_peer = wechatpay_peer.order(pack["order_no"])
    assert pack["pay_params"] == {"code_url": at_peer.code_url}
    assert (at_peer.trade_type, at_peer.total, at_peer.state) == ("NATIVE", 990, "NOTPAY")
    assert at_peer.notify_url == shop.base_url + NOTIFY_PATH
    assert at_peer.params["description"] == pack["name"]
    assert at_peer.params["time_expire"].endswith("+08:00")

    delivery = wechatpay_peer.pay(pack["order_no"])
    await delivery.wait_delivered()
    assert delivery.statuses == [204]
    assert delivery.probe is not None
    assert fail_answer(delivery.probe.status, delivery.probe.body) == (401, FAIL)  # the bad-signature probe
    paid = await my_order(api, user, pack["order_no"])
    assert (paid["status"], paid["paid_fen"], paid["pay_params"]) == ("fulfilled", 990, None)
    assert paid["paid_at"] is not None
    assert (await quota_of(api, user))["balance"] == before["balance"] + 100
    assert await ledger(api, uid, ref=f"order:{pack['order_no']}") == [100]

    member = await buy(api, user, "member-monthly", "wechat_jsapi")
    params = member["pay_params"]
    at_peer = wechatpay_peer.order(member["order_no"])
    assert (at_peer.trade_type, at_peer.total, at_peer.openid) == ("JSAPI", 2990, f"o-test-e2e-{uid}")
    assert params["package"] == f"prepay_id={at_peer.prepay_id}"
    assert (params["appId"], params["signType"]) == (TEST_APPID, "RSA")
    assert abs(int(params["timeStamp"]) - time.time()) < 60
    signed = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    assert rsa_verify(wechatpay_peer.keys.merchant.public_key, signed, params["paySign"])
    assert not rsa_verify(wechatpay_peer.keys.merchant.public_key, signed.replace("prepay_id=", "x"), params["paySign"])

    await wechatpay_peer.pay(member["order_no"]).wait_delivered()
    now = await quota_of(api, user)
    assert now["balance"] == before["balance"] + 100 + 300
    assert now["membership"]["plan"] == "member-monthly"
    assert (await my_order(api, user, member["order_no"]))["status"] == "fulfilled"

    admin = await login_as(api, "admin")
    listed = data(await api.client.get("/api/v1/admin/orders", params={"user_id": uid}, headers=admin.headers))
    assert [(o["order_no"], o["status"]) for o in listed["items"]] == [
        (member["order_no"], "fulfilled"),
        (pack["order_no"], "fulfilled"),
    ]
    detail = data(await api.client.get(f"/api/v1/admin/orders/{member['order_no']}", headers=admin.headers))
    assert detail["transaction_id"] == wechatpay_peer.order(member["order_no"]).transaction_id
    mine = data(await api.client.get("/api/v1/billing/orders", headers=user.headers))
    assert len(mine["items"]) == 2


# -- duplicates --------------------------------------------------------------------------------


async def test_one_notification_delivered_twenty_times_at_once_and_in_turn_fulfils_once(
    shop: Shop, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    api = shop.api
    user = await sms_login(api.client)
    balance = (await quota_of(api, user))["balance"]
    order = await buy(api, user, "pack-100", "wechat_native")
    wechatpay_peer.mark_paid(order["order_no"])
    notice = wechatpay_peer.payment_notice(order["order_no"])

    parallel = await asyncio.gather(*(post_notice(notice) for _ in range(20)))
    assert [a.status for a in parallel] == [204] * 20
    sequential = [(await post_notice(notice)).status for _ in range(20)]
    assert sequential == [204] * 20
    # The platform may also notify the same payment under new ids: still nothing more.
    fresh = await asyncio.gather(*(post_notice(wechatpay_peer.payment_notice(order["order_no"])) for _ in range(5)))
    assert [a.status for a in fresh] == [204] * 5

    assert (await quota_of(api, user))["balance"] == balance + 100
    assert await ledger(api, user.user["id"], ref=f"order:{order['order_no']}") == [100]
    assert await inbox(api) == 6  # one row per distinct notification id
    assert (await my_order(api, user, order["order_no"]))["status"] == "fulfilled"


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_duplicates_split_across_two_app_processes_fulfil_once(
    shop: Shop, wechatpay_peer: ServedWeChatPayPeer, wechatpay_settings: WeChatPaySettings, tmp_path: Path
) -> None:
    api = shop.api
    ports = [free_port(), free_port()]
    servers = []
    for i, port in enumerate(ports):
        env = worker_env(
            api,
            tmp_path,
            worker_in_process="false",
            extra_providers="[]",
            rate_limit_per_ip="100000/minute",
            **wechatpay_settings(port),
        )
        servers.append(spawn_worker(env, tmp_path / f"api{i}.log", "serve", "--host", "127.0.0.1", "--port", str(port)))
    try:
        async with httpx.AsyncClient(timeout=30) as client:

            async def both_up() -> bool:
                assert all(s.poll() is None for s in servers), "an API process exited; see its log"
                try:
                    for port in ports:
                        (await client.get(f"http://127.0.0.1:{port}/health")).raise_for_status()
                except httpx.HTTPError:
                    return False
                return True

            await wait_until(both_up, within=60, every=0.2)
        user = await sms_login(api.client)
        balance = (await quota_of(api, user))["balance"]
        order = await buy(api, user, "pack-100", "wechat_native")
        wechatpay_peer.mark_paid(order["order_no"])
        notice = wechatpay_peer.payment_notice(order["order_no"])
        urls = [f"http://127.0.0.1:{port}{NOTIFY_PATH}" for port in ports]
        parallel = await asyncio.gather(*(post_notice(notice, urls[i % 2]) for i in range(20)))
        sequential = [(await post_notice(notice, urls[i % 2])).status for i in range(20)]
    finally:
        stop_workers(servers)
    assert [a.status for a in parallel] == [204] * 20
    assert sequential == [204] * 20
    assert (await quota_of(api, user))["balance"] == balance + 100
    assert await ledger(api, user.user["id"], ref=f"order:{order['order_no']}") == [100]
    assert await inbox(api) == 1


# -- forgeries ---------------------------------------------------------------------------------


async def test_forged_stale_tampered_or_mismatched_notifications_change_nothing(
    shop: Shop, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    api = shop.api
    user = await sms_login(api.client)
    balance = (await quota_of(api, user))["balance"]
    order = await buy(api, user, "pack-100", "wechat_native")
    no = order["order_no"]
    wechatpay_peer.mark_paid(no)
    url = shop.base_url + NOTIFY_PATH
    genuine = wechatpay_peer.payment_notice(no)
    resource = wechatpay_peer.transaction(no)
    amount = resource["amount"] | {"total": 1, "payer_total": 1}
    now = int(time.time())
    cases: dict[str, tuple[Notice, int]] = {
        "forged signature": (
            wechatpay_peer.notice("TRANSACTION.SUCCESS", resource, url=url, signing_key=KeyPair.generate().private_key),
            401,
        ),
        "body changed after signing": (
            Notice(genuine.body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESs"), genuine.headers, "", url),
            401,
        ),
        "bad-signature probe": (wechatpay_peer.probe_of(genuine), 401),
        "stale timestamp": (wechatpay_peer.notice("TRANSACTION.SUCCESS", resource, url=url, timestamp=now - 400), 401),
        "future timestamp": (wechatpay_peer.notice("TRANSACTION.SUCCESS", resource, url=url, timestamp=now + 400), 401),
        "flipped ciphertext bit": (flip_ciphertext_bit(wechatpay_peer, genuine), 401),
        "another APIv3 key": (
            wechatpay_peer.notice("TRANSACTION.SUCCESS", resource, url=url, apiv3_key="k" * 32),
            401,
        ),
        "wrong amount": (wechatpay_peer.payment_notice(no, amount=amount), 400),
        "wrong mchid": (wechatpay_peer.payment_notice(no, mchid=TEST_MCHID[:-3] + "999"), 400),
        "wrong appid": (wechatpay_peer.payment_notice(no, appid="wx-another-app"), 400),
        "unknown order": (wechatpay_peer.payment_notice(no, out_trade_no="WD20990101000000FFFFFFFFFFFF"), 404),
    }
    bad_before = bad_signatures()
    for name, (notice, status) in cases.items():
        answer = await post_notice(notice)
        assert fail_answer(answer.status, answer.body) == (status, FAIL), name

    stored = await my_order(api, user, no)
    assert (stored["status"], stored["paid_fen"]) == ("pending", 0)
    assert await ledger(api, user.user["id"], ref=f"order:{no}") == []
    assert (await quota_of(api, user))["balance"] == balance
    assert await inbox(api) == 0  # refused notifications leave no inbox row to block a good one
    assert bad_signatures() - bad_before == sum(1 for _, status in cases.values() if status == 401)

    assert (await post_notice(genuine)).status == 204
    assert (await my_order(api, user, no))["status"] == "fulfilled"
    assert await ledger(api, user.user["id"], ref=f"order:{no}") == [100]


# -- the database fails ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_database_failure_makes_the_peer_retry_and_the_retry_fulfils_once(
    backend: Backend, api_factory: Any, wechatpay_settings: WeChatPaySettings, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    db_url = make_url(backend.database_url)
    gate = TcpGate(db_url.host or "127.0.0.1", db_url.port or 3306)
    await gate.open()
    try:
        port = free_port()
        gated = db_url.set(host="127.0.0.1", port=gate.port).render_as_string(hide_password=False)
        api = await open_shop(api_factory, {**wechatpay_settings(port), "database_url": gated, "db_pool_timeout": 2.0})
        user = await sms_login(api.client)
        balance = (await quota_of(api, user))["balance"]
        order = await buy(api, user, "pack-100", "wechat_native")
        async with live(api.app, port):
            await gate.cut()
            delivery = wechatpay_peer.pay(order["order_no"], hold_retries=True)
            [first] = await delivery.wait_attempts(1)
            assert fail_answer(first.status, first.body) == (500, FAIL)
            delivery.retry_now()
            [_, second] = await delivery.wait_attempts(2)
            assert second.status == 500  # still down: told to retry again
            await gate.open()
            delivery.retry_now()
            await delivery.wait_delivered()
            assert delivery.statuses == [500, 500, 204]
            assert delivery.probe is not None
            assert delivery.probe.status == 401
            # A late duplicate of the same notification changes nothing.
            assert (await post_notice(delivery.notice)).status == 204
        assert (await my_order(api, user, order["order_no"]))["status"] == "fulfilled"
        assert (await quota_of(api, user))["balance"] == balance + 100
        assert await ledger(api, user.user["id"], ref=f"order:{order['order_no']}") == [100]
        assert await inbox(api) == 1
    finally:
        await gate.close()


# -- reconciliation ----------------------------------------------------------------------------


async def _age(api: Api, order_no: str, *, minutes: int, expired: bool) -> None:
    values: dict[str, Any] = {"created_at": utcnow() - timedelta(minutes=minutes)}
    if expired:
        values["expires_at"] = utcnow() - timedelta(minutes=1)
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(Order).where(Order.order_no == order_no).values(**values))


async def test_reconciliation_fulfils_a_silent_payment_and_closes_expired_orders_at_the_peer(
    shop: Shop, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    api = shop.api
    user = await sms_login(api.client)
    balance = (await quota_of(api, user))["balance"]
    silent = (await buy(api, user, "pack-100", "wechat_native"))["order_no"]
    expired = (await buy(api, user, "pack-500", "wechat_native"))["order_no"]
    young = (await buy(api, user, "pack-100", "wechat_native"))["order_no"]
    wechatpay_peer.mark_paid(silent)  # and no notification at all
    await _age(api, silent, minutes=10, expired=False)
    await _age(api, expired, minutes=40, expired=True)

    report = await reconcile_once(
        api.infra.session_factory,
        api.infra.payments,
        settings=api.infra.settings,
        cache=api.infra.cache,
        announcer=api.infra.runtime.announcer,
    )
    assert (report.fulfilled, report.closed, report.discrepancies, report.errors) == (1, 1, 1, 0)
    assert (await my_order(api, user, silent))["status"] == "fulfilled"
    assert (await my_order(api, user, expired))["status"] == "closed"
    assert (await my_order(api, user, young))["status"] == "pending"
    assert wechatpay_peer.order(expired).state == "CLOSED"
    assert wechatpay_peer.count("close", expired) == 1
    assert wechatpay_peer.count("query", young) == 0  # too young to ask about
    assert await ledger(api, user.user["id"], ref=f"order:{silent}") == [100]
    assert await ledger(api, user.user["id"], ref=f"order:{expired}") == []

    again = await reconcile_once(
        api.infra.session_factory,
        api.infra.payments,
        settings=api.infra.settings,
        cache=api.infra.cache,
        announcer=api.infra.runtime.announcer,
    )
    assert (again.fulfilled, again.closed, again.discrepancies) == (0, 0, 0)
    assert wechatpay_peer.count("query", silent) == 1
    assert (await quota_of(api, user))["balance"] == balance + 100
    # The peer's late notification of the repaired payment changes nothing either.
    assert (await post_notice(wechatpay_peer.payment_notice(silent))).status == 204
    assert await ledger(api, user.user["id"], ref=f"order:{silent}") == [100]


# -- refunds -----------------------------------------------------------------------------------


async def _paid_order(shop: Shop, peer: ServedWeChatPayPeer, user: Session, sku: str) -> str:
    order = await buy(shop.api, user, sku, "wechat_native")
    await peer.pay(order["order_no"]).wait_delivered()
    assert (await my_order(shop.api, user, order["order_no"]))["status"] == "fulfilled"
    no: str = order["order_no"]
    return no


async def _refund(api: Api, admin: Session, order_no: str, amount_fen: int | None = None) -> httpx.Response:
    body: dict[str, Any] = {"reason": "bought by mistake"}
    if amount_fen is not None:
        body["amount_fen"] = amount_fen
    return await api.client.post(f"/api/v1/admin/orders/{order_no}/refund", json=body, headers=admin.headers)


async def test_a_refund_repeated_ten_times_refunds_once_and_its_notification_claws_back_once(
    shop: Shop, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    api = shop.api
    user = await sms_login(api.client)
    uid = user.user["id"]
    admin = await login_as(api, "admin")
    balance = (await quota_of(api, user))["balance"]
    no = await _paid_order(shop, wechatpay_peer, user, "pack-100")

    answers = await asyncio.gather(*(_refund(api, admin, no) for _ in range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 9, [a.text for a in answers]
    refund = next(data(a, 201) for a in answers if a.status_code == 201)
    assert (refund["amount_fen"], refund["quota"], refund["status"]) == (990, 100, "processing")
    assert all(a.json()["code"] == "REFUND_NOT_ALLOWED" for a in answers if a.status_code == 409)
    for _ in range(10):
        assert (await _refund(api, admin, no)).status_code == 409

    # The same refund number sent to the platform 10 more times at once (a retrying worker).
    async with unit_of_work(api.infra.session_factory) as db:
        refund_id = await db.scalar(select(Refund.id).where(Refund.refund_no == refund["refund_no"]))
    assert refund_id is not None
    await asyncio.gather(
        *(
            push_refund(
                api.infra.session_factory,
                api.infra.payments,
                refund_id,
                cache=api.infra.cache,
                announcer=api.infra.runtime.announcer,
            )
            for _ in range(10)
        )
    )
    [at_peer] = wechatpay_peer.refunds_of(no)
    assert (at_peer.out_refund_no, at_peer.amount, at_peer.status) == (refund["refund_no"], 990, "PROCESSING")
    assert at_peer.params["notify_url"] == shop.base_url + "/api/v1/payments/wechat/refund-notify"
    assert wechatpay_peer.count("refund", no) == 11
    held = await quota_of(api, user)
    assert (held["balance"], held["held"]) == (balance + 100, 100)  # held until the platform confirms

    wechatpay_peer.succeed_refund(refund["refund_no"], notify=False)
    notice = wechatpay_peer.refund_notice(refund["refund_no"])
    answers_5 = await asyncio.gather(*(post_notice(notice) for _ in range(5)))
    assert [a.status for a in answers_5] == [204] * 5
    assert await ledger(api, uid, kind="refund_clawback") == [-100]
    after = await quota_of(api, user)
    assert (after["balance"], after["held"]) == (balance, 0)
    detail = data(await api.client.get(f"/api/v1/admin/orders/{no}", headers=admin.headers))
    assert (detail["status"], detail["refunded_fen"], detail["quota_clawed"]) == ("refunded", 990, 100)
    assert [r["status"] for r in detail["refunds"]] == ["succeeded"]
    assert (await _refund(api, admin, no, 1)).status_code == 409


async def test_partial_refunds_never_add_up_to_more_than_was_paid(
    shop: Shop, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    api = shop.api
    user = await sms_login(api.client)
    uid = user.user["id"]
    admin = await login_as(api, "admin")
    balance = (await quota_of(api, user))["balance"]
    no = await _paid_order(shop, wechatpay_peer, user, "pack-500")  # 3990 fen, 500 quota

    answers = await asyncio.gather(*(_refund(api, admin, no, 1000) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [201] * 3 + [409] * 3
    assert (await _refund(api, admin, no, 991)).status_code == 409  # 990 left
    last = await _refund(api, admin, no, 990)
    assert last.status_code == 201
    assert (await _refund(api, admin, no, 1)).status_code == 409
    refunds = wechatpay_peer.refunds_of(no)
    assert sorted(r.amount for r in refunds) == [990, 1000, 1000, 1000]

    for refund in refunds:
        delivery = wechatpay_peer.succeed_refund(refund.out_refund_no)
        assert delivery is not None
        await delivery.wait_delivered()
    clawed = await ledger(api, uid, kind="refund_clawback")
    assert len(clawed) == 4
    assert sum(clawed) == -500  # exactly what the order brought, however it was split
    detail = data(await api.client.get(f"/api/v1/admin/orders/{no}", headers=admin.headers))
    assert (detail["status"], detail["refunded_fen"], detail["quota_clawed"]) == ("refunded", 3990, 500)
    after = await quota_of(api, user)
    assert (after["balance"], after["held"]) == (balance, 0)
