"""The payment metrics, through the local WeChat Pay and Alipay peers: a notification is accepted,
then a duplicate; a forged or mismatched one is counted as such; reconciliation's repair of a payment
whose notification never came is counted per provider."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from tests.fixtures.auth import sms_login
from tests.modules.payments.test_alipay_e2e import ApiFactory, order_of
from tests.modules.payments.test_alipay_e2e import buy as alipay_buy
from tests.modules.payments.test_alipay_e2e import shop as alipay_shop
from tests.modules.payments.test_wechatpay_e2e import Shop, _age, buy, my_order, shop
from tests.peers.alipay_fixtures import ServedAlipayPeer
from tests.peers.wechatpay import TEST_MCHID
from tests.peers.wechatpay_fixtures import ServedWeChatPayPeer
from tests.peers.wechatpay_notify import Notice, post_notice
from wardrobe.modules.payments.reconciliation import reconcile_once

__all__ = ["shop"]  # the fixture, used by name


def notifications(provider: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("wardrobe_payment_notifications_total", {"provider": provider, "outcome": outcome})
        or 0.0
    )


def repairs(provider: str) -> float:
    return REGISTRY.get_sample_value("wardrobe_reconciliation_repairs_total", {"provider": provider}) or 0.0


OUTCOMES = ("accepted", "duplicate", "bad_signature", "mismatch", "error")


def counts(provider: str) -> list[float]:
    return [notifications(provider, outcome) for outcome in OUTCOMES]


def moved(provider: str, before: list[float]) -> list[float]:
    return [now - was for now, was in zip(counts(provider), before, strict=True)]


async def test_wechat_notifications_are_counted_by_outcome(shop: Shop, wechatpay_peer: ServedWeChatPayPeer) -> None:
    api = shop.api
    user = await sms_login(api.client)
    order = await buy(api, user, "pack-100", "wechat_native")
    no = order["order_no"]
    wechatpay_peer.mark_paid(no)
    genuine = wechatpay_peer.payment_notice(no)
    before = counts("wechat")
    tampered = Notice(
        genuine.body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESs"), genuine.headers, "", genuine.url
    )
    assert (await post_notice(tampered)).status == 401
    assert (await post_notice(wechatpay_peer.payment_notice(no, mchid=TEST_MCHID[:-3] + "999"))).status == 400
    assert moved("wechat", before) == [0, 0, 1, 1, 0]
    assert (await post_notice(genuine)).status == 204
    assert moved("wechat", before) == [1, 0, 1, 1, 0]
    assert (await my_order(api, user, no))["status"] == "fulfilled"
    assert (await post_notice(genuine)).status == 204  # the platform's retry of the same one
    assert moved("wechat", before) == [1, 1, 1, 1, 0]


async def test_alipay_notifications_are_counted_by_outcome(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer
) -> None:
    async with alipay_shop(api_factory, alipay_peer) as api:
        user = await sms_login(api.client)
        no = (await alipay_buy(api, user, "pack-100", "alipay_qr"))["order_no"]
        alipay_peer.scan(no)
        before = counts("alipay")
        delivery = alipay_peer.pay(no)
        assert delivery is not None
        assert (await delivery.wait_delivered()).body == "success"
        assert (await order_of(api, user, no))["status"] == "fulfilled"
        assert moved("alipay", before) == [1, 0, 0, 0, 0]
        url = api.settings.payment_notify_base_url + "/api/v1/payments/alipay/notify"
        again = await alipay_peer.post_notification(alipay_peer.notification(no), url)
        assert (again.status, again.body) == (200, "success")
        forged = await alipay_peer.post_notification(alipay_peer.notification(no, forged=True), url)
        assert forged.status == 400
        assert moved("alipay", before) == [1, 1, 1, 0, 0]


async def test_reconciliation_counts_the_payment_it_repairs(shop: Shop, wechatpay_peer: ServedWeChatPayPeer) -> None:
    api = shop.api
    user = await sms_login(api.client)
    silent = (await buy(api, user, "pack-100", "wechat_native"))["order_no"]
    wechatpay_peer.mark_paid(silent)  # and no notification at all
    await _age(api, silent, minutes=10, expired=False)
    before = repairs("wechat")

    async def reconcile() -> Any:
        return await reconcile_once(
            api.infra.session_factory,
            api.infra.payments,
            settings=api.infra.settings,
            cache=api.infra.cache,
            announcer=api.infra.runtime.announcer,
        )

    assert (await reconcile()).fulfilled == 1
    assert repairs("wechat") - before == 1
    assert (await reconcile()).fulfilled == 0  # nothing left to repair: nothing counted
    assert repairs("wechat") - before == 1
