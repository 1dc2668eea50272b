"""The WeChat Pay peer accepts what WeChat Pay accepts and refuses what it refuses, checked with the
real ``wechatpayv3`` SDK as the client (and raw HTTP where the SDK cannot be made to misbehave)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType
from wechatpayv3.utils import build_authorization, load_private_key

from tests.fixtures.realtime import live
from tests.peers.fixtures import PeerClock
from tests.peers.wechatpay import (
    TEST_APPID,
    TEST_MCHID,
    TEST_MERCHANT_SERIAL,
    TEST_PUBLIC_KEY_ID,
    WeChatPayPeer,
)
from tests.peers.wechatpay_fixtures import ServedWeChatPayPeer
from tests.peers.wechatpay_notify import KeyPair, rsa_verify

NOTIFY = "https://wardrobe.test/api/v1/payments/wechat/notify"


def make_sdk(peer: ServedWeChatPayPeer, **overrides: Any) -> AsyncWeChatPay:
    options: dict[str, Any] = {
        "wechatpay_type": WeChatPayType.MINIPROG,
        "mchid": peer.mchid,
        "private_key": peer.keys.merchant.private_pem,
        "cert_serial_no": peer.merchant_serial,
        "appid": peer.appid,
        "apiv3_key": peer.keys.apiv3_key,
        "public_key": peer.keys.platform.public_pem,
        "public_key_id": peer.public_key_id,
        "notify_url": NOTIFY,
        "timeout": (5, 10),
    } | overrides
    sdk = AsyncWeChatPay(**options)
    sdk._core._gate_way = peer.base_url
    return sdk


@pytest.fixture
async def sdk(wechatpay_peer: ServedWeChatPayPeer) -> AsyncIterator[AsyncWeChatPay]:
    async with make_sdk(wechatpay_peer) as client:
        yield client


def _body(text: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(text)
    return parsed


async def _native(sdk: AsyncWeChatPay, no: str, total: int = 990, **extra: Any) -> tuple[int, dict[str, Any]]:
    status, text = await sdk.pay(
        description="100 次加油包",
        out_trade_no=no,
        amount={"total": total, "currency": "CNY"},
        pay_type=WeChatPayType.NATIVE,
        **extra,
    )
    return status, _body(text)


async def _jsapi(sdk: AsyncWeChatPay, no: str, total: int = 2990) -> tuple[int, dict[str, Any]]:
    status, text = await sdk.pay(
        description="月度会员",
        out_trade_no=no,
        amount={"total": total, "currency": "CNY"},
        payer={"openid": "o-test-openid-0001"},
        pay_type=WeChatPayType.MINIPROG,
    )
    return status, _body(text)


def signed_request(
    peer: WeChatPayPeer,
    method: str,
    target: str,
    body: str = "",
    *,
    private_pem: str | None = None,
    send_body: str | None = None,
) -> dict[str, Any]:
    """The arguments of an ``httpx`` request signed as the SDK signs (``send_body`` differs from
    the signed body when a test tampers with it)."""
    key = load_private_key(private_pem or peer.keys.merchant.private_pem)
    auth = build_authorization(target, method, peer.mchid, peer.merchant_serial, key, data=body or None)
    headers = {"Authorization": auth, "Accept": "application/json", "Content-Type": "application/json"}
    return {"method": method, "url": target, "headers": headers, "content": send_body if send_body else body}


def assert_signed(peer: WeChatPayPeer, answer: httpx.Response) -> None:
    """The answer carries WeChat Pay's headers and a signature that verifies with the platform key."""
    for header in ("Request-ID", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial"):
        assert answer.headers.get(header), header
    assert answer.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert answer.headers["Wechatpay-Serial"] == TEST_PUBLIC_KEY_ID
    message = f"{answer.headers['Wechatpay-Timestamp']}\n{answer.headers['Wechatpay-Nonce']}\n{answer.text}\n"
    assert rsa_verify(peer.keys.platform.public_key, message, answer.headers["Wechatpay-Signature"])


# -- orders ------------------------------------------------------------------------------------


async def test_a_native_order_is_created_once_and_its_answer_verifies_with_the_sdk(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay
) -> None:
    status, first = await _native(sdk, "WDPEER00000000000001")  # the SDK raises on a bad signature
    assert status == 200
    assert first["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    status, again = await _native(sdk, "WDPEER00000000000001")
    assert (status, again) == (200, first)  # identical re-order: the same code_url
    status, other = await _native(sdk, "WDPEER00000000000001", total=991)
    assert (status, other["code"]) == (403, "OUT_TRADE_NO_USED")
    order = wechatpay_peer.order("WDPEER00000000000001")
    assert (order.trade_type, order.state, order.total, order.notify_url) == ("NATIVE", "NOTPAY", 990, NOTIFY)
    assert wechatpay_peer.count("create", "WDPEER00000000000001") == 3


async def test_a_jsapi_order_gives_the_same_prepay_id_and_a_native_one_with_its_number_is_refused(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay
) -> None:
    status, first = await _jsapi(sdk, "WDPEER00000000000002")
    assert status == 200
    assert first["prepay_id"].startswith("wx")
    assert (await _jsapi(sdk, "WDPEER00000000000002"))[1] == first
    status, clash = await _native(sdk, "WDPEER00000000000002", total=2990)
    assert (status, clash["code"]) == (403, "OUT_TRADE_NO_USED")
    assert wechatpay_peer.order("WDPEER00000000000002").openid == "o-test-openid-0001"


async def test_another_app_or_merchant_in_the_body_is_refused(sdk: AsyncWeChatPay) -> None:
    status, answer = await _native(sdk, "WDPEER00000000000003", appid="wx-another-app")
    assert (status, answer["code"]) == (400, "APPID_MCHID_NOT_MATCH")
    status, answer = await _native(sdk, "WDPEER00000000000003", mchid="1900000999")
    assert (status, answer["code"]) == (400, "APPID_MCHID_NOT_MATCH")


async def test_query_says_notpay_until_paid_then_success_with_a_transaction(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay
) -> None:
    await _native(sdk, "WDPEER00000000000004")
    status, text = await sdk.query(out_trade_no="WDPEER00000000000004")
    pending = _body(text)
    assert (status, pending["trade_state"], pending["mchid"], pending["appid"]) == (
        200,
        "NOTPAY",
        TEST_MCHID,
        TEST_APPID,
    )
    assert "transaction_id" not in pending
    assert "success_time" not in pending
    wechatpay_peer.mark_paid("WDPEER00000000000004")
    paid = _body((await sdk.query(out_trade_no="WDPEER00000000000004"))[1])
    assert paid["trade_state"] == "SUCCESS"
    assert paid["transaction_id"].startswith("42000")
    assert paid["amount"]["total"] == paid["amount"]["payer_total"] == 990
    assert paid["success_time"].endswith("+08:00")
    by_id = _body((await sdk.query(transaction_id=paid["transaction_id"]))[1])
    assert by_id == paid
    status, text = await sdk.close(out_trade_no="WDPEER00000000000004")
    assert (status, _body(text)["code"]) == (400, "ORDERPAID")
    assert wechatpay_peer.count("query", "WDPEER00000000000004") == 3


async def test_a_closed_order_answers_closed_and_cannot_be_ordered_again(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay
) -> None:
    await _native(sdk, "WDPEER00000000000005")
    status, text = await sdk.close(out_trade_no="WDPEER00000000000005")
    assert (status, text) == (204, b"")  # the SDK verified the signature over the empty body
    assert _body((await sdk.query(out_trade_no="WDPEER00000000000005"))[1])["trade_state"] == "CLOSED"
    status, answer = await _native(sdk, "WDPEER00000000000005")
    assert (status, answer["code"]) == (400, "ORDER_CLOSED")
    with pytest.raises(ValueError, match="CLOSED"):
        wechatpay_peer.mark_paid("WDPEER00000000000005")
    status, text = await sdk.query(out_trade_no="WDPEER00000000009999")
    assert (status, _body(text)["code"]) == (404, "ORDER_NOT_EXIST")
    status, text = await sdk.close(out_trade_no="WDPEER00000000009999")
    assert (status, _body(text)["code"]) == (404, "ORDER_NOT_EXIST")


# -- refunds -----------------------------------------------------------------------------------


async def _refund(sdk: AsyncWeChatPay, no: str, refund_no: str, fen: int, total: int = 990) -> tuple[int, Any]:
    status, text = await sdk.refund(
        out_refund_no=refund_no,
        out_trade_no=no,
        amount={"refund": fen, "total": total, "currency": "CNY"},
        reason="test",
        notify_url=NOTIFY.replace("notify", "refund-notify"),
    )
    return status, _body(text)


async def test_refunds_are_idempotent_on_their_number_and_never_exceed_the_paid_amount(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay
) -> None:
    await _native(sdk, "WDPEER00000000000006")
    status, answer = await _refund(sdk, "WDPEER00000000000006", "RPEER000000000000061", 300)
    assert (status, answer["code"]) == (400, "INVALID_REQUEST")  # not paid yet
    wechatpay_peer.mark_paid("WDPEER00000000000006")
    status, first = await _refund(sdk, "WDPEER00000000000006", "RPEER000000000000061", 300)
    assert (status, first["status"], first["amount"]["refund"]) == (200, "PROCESSING", 300)
    status, again = await _refund(sdk, "WDPEER00000000000006", "RPEER000000000000061", 300)
    assert (status, again["refund_id"]) == (200, first["refund_id"])
    status, over = await _refund(sdk, "WDPEER00000000000006", "RPEER000000000000062", 691)
    assert (status, over["code"]) == (400, "INVALID_REQUEST")  # 300 + 691 > 990
    status, wrong_total = await _refund(sdk, "WDPEER00000000000006", "RPEER000000000000063", 10, total=1000)
    assert (status, wrong_total["code"]) == (400, "INVALID_REQUEST")
    status, rest = await _refund(sdk, "WDPEER00000000000006", "RPEER000000000000064", 690)
    assert (status, rest["status"]) == (200, "PROCESSING")
    assert [r.amount for r in wechatpay_peer.refunds_of("WDPEER00000000000006")] == [300, 690]
    assert _body((await sdk.query(out_trade_no="WDPEER00000000000006"))[1])["trade_state"] == "REFUND"

    queried = _body((await sdk.query_refund(out_refund_no="RPEER000000000000061"))[1])
    assert queried["status"] == "PROCESSING"
    assert "success_time" not in queried
    assert wechatpay_peer.succeed_refund("RPEER000000000000061", notify=False) is None
    queried = _body((await sdk.query_refund(out_refund_no="RPEER000000000000061"))[1])
    assert (queried["status"], queried["refund_id"]) == ("SUCCESS", first["refund_id"])
    assert queried["success_time"].endswith("+08:00")
    status, text = await sdk.query_refund(out_refund_no="RPEER000000000000099")
    assert (status, _body(text)["code"]) == (404, "RESOURCE_NOT_EXISTS")
    status, unknown = await _refund(sdk, "WDPEER00000000009999", "RPEER000000000000065", 1)
    assert (status, unknown["code"]) == (404, "RESOURCE_NOT_EXISTS")
    assert wechatpay_peer.count("refund", "WDPEER00000000000006") == 6
    assert wechatpay_peer.count("refund_query", "WDPEER00000000000006") == 2


# -- request signatures ------------------------------------------------------------------------


async def test_a_request_signed_with_another_key_serial_or_merchant_is_refused(
    wechatpay_peer: ServedWeChatPayPeer,
) -> None:
    stranger = KeyPair.generate()
    for overrides in (
        {"private_key": stranger.private_pem},
        {"cert_serial_no": "0000000000000000000000000000000000000000"},
        {"mchid": "1900000999"},
    ):
        async with make_sdk(wechatpay_peer, **overrides) as client:
            status, answer = await _native(client, "WDPEER00000000000007")
        assert (status, answer) == (401, {"code": "SIGN_ERROR", "message": "签名错误"}), overrides
    assert wechatpay_peer.rejected["SIGN_ERROR"] == 3
    assert "WDPEER00000000000007" not in wechatpay_peer.orders
    assert wechatpay_peer.count("create", "WDPEER00000000000007") == 0


async def test_the_timestamp_must_be_within_five_minutes_of_the_peer(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay, peer_clock: PeerClock
) -> None:
    peer_clock.advance(290)
    assert (await _native(sdk, "WDPEER00000000000008"))[0] == 200
    peer_clock.advance(20)  # the SDK signs with the wall clock, now 310 s behind the peer
    status, answer = await _native(sdk, "WDPEER00000000000008")
    assert (status, answer["code"]) == (401, "SIGN_ERROR")


async def test_raw_requests_with_a_changed_body_a_missing_field_or_no_json_are_refused(
    wechatpay_peer: ServedWeChatPayPeer,
) -> None:
    body = json.dumps({"mchid": TEST_MCHID})
    target = "/v3/pay/transactions/out-trade-no/WDPEER00000000000009/close"
    async with httpx.AsyncClient(base_url=wechatpay_peer.base_url) as http:
        tampered = signed_request(wechatpay_peer, "POST", target, body, send_body=json.dumps({"mchid": "1"}))
        answer = await http.request(**tampered)
        assert (answer.status_code, answer.json()["code"]) == (401, "SIGN_ERROR")
        assert_signed(wechatpay_peer, answer)

        good = signed_request(wechatpay_peer, "POST", target, body)
        good["headers"]["Authorization"] = good["headers"]["Authorization"].replace(
            f',serial_no="{TEST_MERCHANT_SERIAL}"', ""
        )
        answer = await http.request(**good)
        assert (answer.status_code, answer.json()["code"]) == (401, "SIGN_ERROR")

        good = signed_request(wechatpay_peer, "POST", target, body)
        good["headers"]["Authorization"] = good["headers"]["Authorization"].replace("WECHATPAY2-", "WECHATPAY1-")
        assert (await http.request(**good)).status_code == 401

        good = signed_request(wechatpay_peer, "POST", target, body)
        good["headers"]["Accept"] = "text/html"
        answer = await http.request(**good)
        assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_REQUEST")
        assert_signed(wechatpay_peer, answer)

        good = signed_request(wechatpay_peer, "POST", target, body)
        good["headers"]["Content-Type"] = "application/x-www-form-urlencoded"
        answer = await http.request(**good)
        assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_REQUEST")

        # Correctly signed, the same request reaches the order book (which does not know it).
        answer = await http.request(**signed_request(wechatpay_peer, "POST", target, body))
        assert (answer.status_code, answer.json()["code"]) == (404, "ORDER_NOT_EXIST")
        assert_signed(wechatpay_peer, answer)
        # The query string is signed too: a signature over another query does not pass.
        signed = signed_request(wechatpay_peer, "GET", "/v3/pay/transactions/out-trade-no/WDPEER0000009?mchid=1")
        signed["url"] = f"/v3/pay/transactions/out-trade-no/WDPEER0000009?mchid={TEST_MCHID}"
        assert (await http.request(**signed)).status_code == 401


async def test_a_corrupted_answer_signature_is_caught_by_the_sdk_and_faults_are_signed(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay
) -> None:
    wechatpay_peer.corrupt_next_response_signatures(1)
    with pytest.raises(Exception, match="failed to verify the signature"):
        await _native(sdk, "WDPEER00000000000010")
    wechatpay_peer.fail_next(1, status=503, code="SERVICE_UNAVAILABLE")
    status, answer = await _native(sdk, "WDPEER00000000000010")
    assert (status, answer["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert (await _native(sdk, "WDPEER00000000000010"))[0] == 200  # the same order, retried


# -- notifications -----------------------------------------------------------------------------


class Receiver:
    """A merchant notify endpoint that verifies and decrypts with the SDK and answers as told."""

    def __init__(self, sdk: AsyncWeChatPay) -> None:
        self.sdk = sdk
        self.answers: list[int] = []  # statuses to answer, in order; then 204
        self.verified: list[dict[str, Any]] = []
        self.refused = 0

    async def endpoint(self, request: Request) -> Response:
        decoded = self.sdk.callback(dict(request.headers), (await request.body()).decode())
        if not decoded:
            self.refused += 1
            return Response(b'{"code":"FAIL","message":"fail"}', status_code=401, media_type="application/json")
        status = self.answers.pop(0) if self.answers else 204
        if status == 204:
            self.verified.append(decoded)
        return Response(status_code=status)


@pytest.fixture
async def receiver(wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay) -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver(sdk)
    app = Starlette(routes=[Route("/notify", got.endpoint, methods=["POST"])])
    async with live(app) as base:
        yield got, f"{base}/notify"


async def test_a_payment_is_notified_encrypted_and_signed_after_one_bad_probe(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    await sdk.pay(
        description="pack",
        out_trade_no="WDPEER00000000000011",
        amount={"total": 990, "currency": "CNY"},
        notify_url=url,
        pay_type=WeChatPayType.NATIVE,
    )
    delivery = wechatpay_peer.pay("WDPEER00000000000011")
    answer = await delivery.wait_delivered()
    assert answer.status == 204
    assert delivery.probe is not None
    assert delivery.probe.status == 401  # the probe did not verify with the SDK
    assert got.refused == 1
    [decoded] = got.verified
    assert decoded["event_type"] == "TRANSACTION.SUCCESS"
    assert decoded["resource_type"] == "encrypt-resource"
    assert decoded["resource"] == wechatpay_peer.transaction("WDPEER00000000000011")
    assert decoded["resource"]["trade_state"] == "SUCCESS"
    assert delivery.statuses == [204]


async def test_a_failed_delivery_is_retried_until_answered_204(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    await sdk.pay(
        description="pack",
        out_trade_no="WDPEER00000000000012",
        amount={"total": 990, "currency": "CNY"},
        notify_url=url,
        pay_type=WeChatPayType.NATIVE,
    )
    got.answers = [500, 503]
    held = wechatpay_peer.pay("WDPEER00000000000012", hold_retries=True)
    assert [a.status for a in await held.wait_attempts(1)] == [500]
    assert not held.delivered
    held.retry_now()
    assert [a.status for a in await held.wait_attempts(2)] == [500, 503]
    held.retry_now()
    await held.wait_delivered()
    assert held.statuses == [500, 503, 204]
    assert len(got.verified) == 1

    # On the (scaled-down) schedule, without a nudge; a 200 counts as delivered too.
    got.answers = [500, 500, 200]
    wechatpay_peer.send_probe = False
    timed = wechatpay_peer.deliver(wechatpay_peer.payment_notice("WDPEER00000000000012"))
    await timed.wait_delivered()
    assert timed.statuses == [500, 500, 200]


async def test_the_schedule_ends_after_fifteen_retries(
    wechatpay_peer: ServedWeChatPayPeer, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    got.answers = [500] * 100
    wechatpay_peer.time_scale = 1e-6
    notice = wechatpay_peer.notice("TRANSACTION.SUCCESS", {"mchid": TEST_MCHID}, url=url)
    delivery = wechatpay_peer.deliver(notice, probe=False)
    with pytest.raises(AssertionError, match="never delivered"):
        await delivery.wait_delivered()
    assert delivery.statuses == [500] * 16


async def test_a_refund_success_is_notified_through_the_http_hook(
    wechatpay_peer: ServedWeChatPayPeer, sdk: AsyncWeChatPay, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    await sdk.pay(
        description="pack",
        out_trade_no="WDPEER00000000000013",
        amount={"total": 990, "currency": "CNY"},
        notify_url=url,
        pay_type=WeChatPayType.NATIVE,
    )
    async with httpx.AsyncClient(base_url=wechatpay_peer.base_url) as http:
        hooked = await http.post("/__peer/pay/WDPEER00000000000013")
        assert hooked.status_code == 202
        paid = wechatpay_peer.deliveries[-1]
        await paid.wait_delivered()
        await sdk.refund(
            out_refund_no="RPEER000000000000131",
            out_trade_no="WDPEER00000000000013",
            amount={"refund": 990, "total": 990, "currency": "CNY"},
            notify_url=url,
        )
        assert (await http.post("/__peer/refund/RPEER000000000000131/succeed")).status_code == 202
        refunded = wechatpay_peer.deliveries[-1]
        await refunded.wait_delivered()
        assert (await http.post("/__peer/refund/RPEER000000000000131/succeed")).status_code == 409
    payment, refund = got.verified
    assert payment["event_type"] == "TRANSACTION.SUCCESS"
    assert refund["event_type"] == "REFUND.SUCCESS"
    assert refund["resource"]["refund_status"] == "SUCCESS"
    assert refund["resource"]["amount"] == {"total": 990, "refund": 990, "payer_total": 990, "payer_refund": 990}
    assert refund["resource"]["out_trade_no"] == "WDPEER00000000000013"
