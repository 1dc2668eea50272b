"""The Alipay peer accepts what Alipay accepts and refuses what it refuses, checked with
python-alipay-sdk as the independent client: it signs the requests, verifies the peer's answers
over their exact text, and verifies the notifications the peer posts."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from alipay import AliPay
from alipay.exceptions import AliPayValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.peers.alipay import CHINA, GATEWAY_PATH, STAMP, TEST_ALIPAY_APP_ID, GatewayError, generate_key_pair
from tests.peers.alipay_fixtures import ServedAlipayPeer
from tests.peers.server import PeerServer


def _stamp(offset: float = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset, CHINA).strftime(STAMP)


class Merchant:
    """A merchant talking to the peer through the SDK (sign_data; answers checked by the SDK)."""

    def __init__(self, peer: ServedAlipayPeer, http: httpx.AsyncClient, app_private: str | None = None) -> None:
        self.peer = peer
        self.http = http
        self.sdk = AliPay(
            appid=TEST_ALIPAY_APP_ID,
            app_private_key_string=app_private or peer.keys.app_private,
            alipay_public_key_string=peer.keys.alipay_public,
        )

    def signed(self, method: str, biz: dict[str, Any], **common: str) -> str:
        data = self.sdk.build_body(method, biz, timestamp=common.pop("timestamp", _stamp()), **common)
        return str(self.sdk.sign_data(data))

    async def raw(self, method: str, biz: dict[str, Any], **common: str) -> str:
        response = await self.http.get(GATEWAY_PATH + "?" + self.signed(method, biz, **common))
        assert response.status_code == 200
        return response.text

    async def call(self, method: str, biz: dict[str, Any], **common: str) -> dict[str, Any]:
        text = await self.raw(method, biz, **common)
        # Raises unless the peer's signature covers the exact text of the response object.
        answer: dict[str, Any] = self.sdk._verify_and_return_sync_response(text, method.replace(".", "_") + "_response")
        return answer

    async def precreate(self, no: str, amount: str = "9.90", **common: str) -> dict[str, Any]:
        biz = {"out_trade_no": no, "total_amount": amount, "subject": "100 次加油包"}
        return await self.call("alipay.trade.precreate", biz, notify_url="http://127.0.0.1:9/notify", **common)


@pytest.fixture
async def merchant(alipay_peer: ServedAlipayPeer) -> AsyncIterator[Merchant]:
    async with httpx.AsyncClient(base_url=alipay_peer.base_url, timeout=10) as http:
        yield Merchant(alipay_peer, http)


# -- signatures ------------------------------------------------------------------------------


async def test_a_request_signed_by_the_sdk_is_accepted_and_the_answer_verifies(merchant: Merchant) -> None:
    answer = await merchant.precreate("WD-PEER-1")
    assert answer["code"] == "10000"
    assert answer["out_trade_no"] == "WD-PEER-1"
    assert answer["qr_code"].startswith("https://qr.alipay.com/")
    assert merchant.peer.calls_for("WD-PEER-1") == {"alipay.trade.precreate": 1}


async def test_common_params_in_the_query_and_biz_content_in_a_form_are_merged(merchant: Merchant) -> None:
    pairs = parse_qsl(merchant.signed("alipay.trade.query", {"out_trade_no": "WD-NONE"}))
    query = {k: v for k, v in pairs if k != "biz_content"}
    form = {k: v for k, v in pairs if k == "biz_content"}
    response = await merchant.http.post(GATEWAY_PATH, params=query, data=form)
    answer = merchant.sdk._verify_and_return_sync_response(response.text, "alipay_trade_query_response")
    assert answer["sub_code"] == "ACQ.TRADE_NOT_EXIST"  # past the signature: the merge kept every param


@pytest.mark.parametrize(
    ("tamper", "code", "sub_code"),
    [
        ("amount", "40002", "isv.invalid-signature"),
        ("other_key", "40002", "isv.invalid-signature"),
        ("unsigned_sign_type", "40002", "isv.invalid-signature"),
        ("no_sign", "40001", "isv.missing-signature"),
        ("sign_type_rsa", "40002", "isv.invalid-signature-type"),
        ("app_id", "40002", "isv.invalid-app-id"),
        ("charset", "40002", "isv.invalid-charset"),
        ("version", "40002", "isv.invalid-version"),
        ("stale", "40002", "isv.invalid-timestamp"),
        ("future", "40002", "isv.invalid-timestamp"),
        ("timestamp_format", "40002", "isv.invalid-timestamp"),
    ],
)
async def test_bad_requests_are_refused_with_a_signed_answer(
    merchant: Merchant, tamper: str, code: str, sub_code: str
) -> None:
    biz = {"out_trade_no": "WD-PEER-2", "total_amount": "9.90", "subject": "s"}
    common: dict[str, str] = {}
    if tamper == "stale":
        common["timestamp"] = _stamp(-11 * 60)
    elif tamper == "future":
        common["timestamp"] = _stamp(11 * 60)
    elif tamper == "timestamp_format":
        common["timestamp"] = str(int(time.time()))
    elif tamper in ("charset", "version"):
        common[tamper] = "gbk" if tamper == "charset" else "2.0"
    signer = merchant
    if tamper == "other_key":
        signer = Merchant(merchant.peer, merchant.http, app_private=generate_key_pair()[0])
    params = dict(parse_qsl(signer.signed("alipay.trade.precreate", biz, **common)))
    if tamper == "amount":
        params["biz_content"] = params["biz_content"].replace("9.90", "0.01")
    elif tamper == "no_sign":
        del params["sign"]
    elif tamper == "sign_type_rsa":
        params["sign_type"] = "RSA"
    elif tamper == "app_id":
        params["app_id"] = "2021000000009999"
    elif tamper == "unsigned_sign_type":
        # Signed over everything but sign_type: Alipay includes sign_type in request signatures.
        unsigned = {k: v for k, v in params.items() if k not in ("sign", "sign_type")}
        params["sign"] = merchant.sdk._sign("&".join(f"{k}={unsigned[k]}" for k in sorted(unsigned)))
    response = await merchant.http.get(GATEWAY_PATH, params=params)
    answer = merchant.sdk._verify_and_return_sync_response(response.text, "alipay_trade_precreate_response")
    assert (answer["code"], answer["sub_code"]) == (code, sub_code)
    assert "WD-PEER-2" not in merchant.peer.trades  # nothing was created
    assert merchant.peer.refused[sub_code] == 1


async def test_nine_minutes_of_skew_are_tolerated(merchant: Merchant) -> None:
    assert (await merchant.precreate("WD-PEER-3", timestamp=_stamp(-9 * 60)))["code"] == "10000"
    assert (await merchant.precreate("WD-PEER-4", timestamp=_stamp(9 * 60)))["code"] == "10000"


async def test_answers_are_signed_over_their_exact_text_with_alipays_key(merchant: Merchant) -> None:
    text = await merchant.raw("alipay.trade.query", {"out_trade_no": "WD-NONE"})
    stranger = AliPay(
        appid=TEST_ALIPAY_APP_ID,
        app_private_key_string=merchant.peer.keys.app_private,
        alipay_public_key_string=generate_key_pair()[1],
    )
    with pytest.raises(AliPayValidationError):
        stranger._verify_and_return_sync_response(text, "alipay_trade_query_response")
    with pytest.raises(AliPayValidationError):
        merchant.sdk._verify_and_return_sync_response(
            text.replace("TRADE_NOT_EXIST", "TRADE_NOT_EXISX"), "alipay_trade_query_response"
        )
    body = text[text.index(":") + 1 : text.index(',"sign":')]
    assert body == json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))


async def test_an_unknown_method_is_refused(merchant: Merchant) -> None:
    text = await merchant.raw("alipay.trade.unknown", {"out_trade_no": "WD-1"})
    answer = json.loads(text)["error_response"]
    assert (answer["code"], answer["sub_code"]) == ("40002", "isv.invalid-method")


# -- trade states ----------------------------------------------------------------------------


async def test_a_trade_is_unknown_until_scanned_then_waits_then_is_paid(merchant: Merchant) -> None:
    peer, no = merchant.peer, "WD-PEER-5"
    first = await merchant.precreate(no)
    assert (await merchant.precreate(no))["qr_code"] == first["qr_code"]  # the same trade again
    query = await merchant.call("alipay.trade.query", {"out_trade_no": no})
    assert (query["code"], query["sub_code"]) == ("40004", "ACQ.TRADE_NOT_EXIST")
    peer.scan(no)
    query = await merchant.call("alipay.trade.query", {"out_trade_no": no})
    assert (query["code"], query["trade_status"]) == ("10000", "WAIT_BUYER_PAY")
    assert "send_pay_date" not in query
    assert peer.pay(no, notify=False) is None
    query = await merchant.call("alipay.trade.query", {"out_trade_no": no})
    assert (query["trade_status"], query["total_amount"], query["trade_no"]) == (
        "TRADE_SUCCESS",
        "9.90",
        peer.trade(no).trade_no,
    )
    assert query["send_pay_date"]
    again = await merchant.precreate(no)
    assert again["sub_code"] == "ACQ.TRADE_HAS_SUCCESS"
    close = await merchant.call("alipay.trade.close", {"out_trade_no": no})
    assert close["sub_code"] == "ACQ.TRADE_STATUS_ERROR"  # a paid trade cannot be closed
    assert peer.calls_for(no) == {"alipay.trade.precreate": 3, "alipay.trade.query": 3, "alipay.trade.close": 1}


async def test_close_and_inconsistent_repeats(merchant: Merchant) -> None:
    peer = merchant.peer
    await merchant.precreate("WD-PEER-6")
    unscanned = await merchant.call("alipay.trade.close", {"out_trade_no": "WD-PEER-6"})
    assert unscanned["sub_code"] == "ACQ.TRADE_NOT_EXIST"  # Alipay cannot close a code nobody scanned
    assert (await merchant.precreate("WD-PEER-6", amount="0.01"))["sub_code"] == "ACQ.CONTEXT_INCONSISTENT"
    peer.scan("WD-PEER-6")
    closed = await merchant.call("alipay.trade.close", {"out_trade_no": "WD-PEER-6"})
    assert (closed["code"], closed["trade_no"]) == ("10000", peer.trade("WD-PEER-6").trade_no)
    query = await merchant.call("alipay.trade.query", {"trade_no": peer.trade("WD-PEER-6").trade_no})
    assert query["trade_status"] == "TRADE_CLOSED"
    assert (await merchant.precreate("WD-PEER-6"))["sub_code"] == "ACQ.TRADE_HAS_CLOSE"
    with pytest.raises(ValueError, match="TRADE_CLOSED"):
        peer.pay("WD-PEER-6", notify=False)
    bad = await merchant.call(
        "alipay.trade.precreate", {"out_trade_no": "WD-PEER-7", "total_amount": "9.999", "subject": "s"}
    )
    assert bad["sub_code"] == "ACQ.INVALID_PARAMETER"


# -- refunds ---------------------------------------------------------------------------------


async def _paid(merchant: Merchant, no: str, amount: str = "39.90") -> None:
    await merchant.precreate(no, amount=amount)
    merchant.peer.pay(no, notify=False)


async def _refund(merchant: Merchant, no: str, amount: str, request_no: str | None) -> dict[str, Any]:
    biz = {"out_trade_no": no, "refund_amount": amount}
    if request_no:
        biz["out_request_no"] = request_no
    return await merchant.call("alipay.trade.refund", biz)


async def test_refunds_are_idempotent_on_out_request_no(merchant: Merchant) -> None:
    peer, no = merchant.peer, "WD-PEER-8"
    merchant.peer.notify_refunds = False
    await merchant.precreate(no, amount="39.90")
    unpaid = await _refund(merchant, no, "1.00", "R1")
    assert unpaid["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    peer.scan(no)
    assert (await _refund(merchant, no, "1.00", "R1"))["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    peer.pay(no, notify=False)
    missing = await merchant.call("alipay.trade.fastpay.refund.query", {"out_trade_no": no, "out_request_no": "R1"})
    assert (missing["code"], "refund_status" in missing) == ("10000", False)
    first = await _refund(merchant, no, "10.00", "R1")
    assert (first["code"], first["fund_change"], first["refund_fee"]) == ("10000", "Y", "10.00")
    for _ in range(3):
        repeat = await _refund(merchant, no, "10.00", "R1")
        assert (repeat["code"], repeat["fund_change"], repeat["refund_fee"]) == ("10000", "N", "10.00")
    assert (await _refund(merchant, no, "11.00", "R1"))["sub_code"] == "ACQ.DISCORDANT_REPEAT_REQUEST"
    assert (await _refund(merchant, no, "5.00", None))["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    assert (await _refund(merchant, no, "29.91", "R2"))["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    found = await merchant.call("alipay.trade.fastpay.refund.query", {"out_trade_no": no, "out_request_no": "R1"})
    assert (found["refund_status"], found["refund_amount"]) == ("REFUND_SUCCESS", "10.00")
    rest = await _refund(merchant, no, "29.90", "R2")
    assert (rest["fund_change"], rest["refund_fee"]) == ("Y", "39.90")
    query = await merchant.call("alipay.trade.query", {"out_trade_no": no})
    assert query["trade_status"] == "TRADE_CLOSED"  # refunded in full
    assert (await _refund(merchant, no, "0.01", "R3"))["sub_code"] == "ACQ.TRADE_HAS_CLOSE"
    assert [f for f in peer.fund_changes if f[2] == "Y"] == [(no, "R1", "Y"), (no, "R2", "Y")]
    assert peer.trade(no).refunded_fen == 3990


async def test_a_full_refund_without_request_number_is_keyed_by_the_trade(merchant: Merchant) -> None:
    merchant.peer.notify_refunds = False
    await _paid(merchant, "WD-PEER-9", "9.90")
    assert (await _refund(merchant, "WD-PEER-9", "9.90", None))["fund_change"] == "Y"
    assert (await _refund(merchant, "WD-PEER-9", "9.90", None))["fund_change"] == "N"


async def test_faults_answer_20000_or_lose_the_answer_after_the_work(merchant: Merchant) -> None:
    peer = merchant.peer
    peer.notify_refunds = False
    await _paid(merchant, "WD-PEER-10", "9.90")
    peer.fail_next("alipay.trade.refund", "system_error")
    busy = await _refund(merchant, "WD-PEER-10", "9.90", "R1")
    assert (busy["code"], busy["sub_code"]) == ("20000", "aop.ACQ.SYSTEM_ERROR")
    assert peer.trade("WD-PEER-10").refunds == {}
    peer.fail_next("alipay.trade.refund", "lost_answer")
    lost = await merchant.http.get(
        GATEWAY_PATH
        + "?"
        + merchant.signed(
            "alipay.trade.refund", {"out_trade_no": "WD-PEER-10", "refund_amount": "9.90", "out_request_no": "R1"}
        )
    )
    assert (lost.status_code, lost.text) == (502, "")
    assert peer.trade("WD-PEER-10").refunded_fen == 990  # done, though nobody heard
    assert (await _refund(merchant, "WD-PEER-10", "9.90", "R1"))["fund_change"] == "N"


# -- page and wap pay ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "product"),
    [("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"), ("alipay.trade.wap.pay", "QUICK_WAP_WAY")],
)
async def test_a_pay_url_signed_by_the_sdk_verifies_and_registers_the_trade(
    merchant: Merchant, method: str, product: str
) -> None:
    peer = merchant.peer
    biz = {"out_trade_no": "WD-PEER-11", "total_amount": "29.90", "subject": "月度会员", "product_code": product}
    url = peer.gateway_url + "?" + merchant.signed(method, biz, notify_url="http://127.0.0.1:9/n")
    trade = peer.verify_pay_url(url)
    assert (trade.out_trade_no, trade.total_fen, trade.method, trade.notify_url) == (
        "WD-PEER-11",
        2990,
        method,
        "http://127.0.0.1:9/n",
    )
    page = await merchant.http.get(url)
    assert "收银台 WD-PEER-11 29.90" in page.text
    with pytest.raises(GatewayError) as refused:
        peer.verify_pay_url(url.replace("29.90", "0.01"))
    assert refused.value.body["sub_code"] == "isv.invalid-signature"
    wrong = peer.gateway_url + "?" + merchant.signed(method, {**biz, "out_trade_no": "WD-PEER-12", "product_code": "X"})
    with pytest.raises(GatewayError) as refused:
        peer.verify_pay_url(wrong)
    assert refused.value.body["sub_code"] == "ACQ.INVALID_PARAMETER"
    assert peer.calls_for("WD-PEER-11") == {method: 2}


# -- notifications ---------------------------------------------------------------------------


class Receiver:
    """A merchant's notify endpoint answering from a script of bodies; the last one repeats."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.received: list[dict[str, str]] = []

    async def endpoint(self, request: Request) -> Response:
        self.received.append(dict(parse_qsl((await request.body()).decode(), keep_blank_values=True)))
        return PlainTextResponse(self.answers[min(len(self.received), len(self.answers)) - 1])


@pytest.fixture
def receiver_server() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver(["success"])
    app = Starlette(routes=[Route("/notify", receiver.endpoint, methods=["POST"])])
    with PeerServer(app) as server:
        yield receiver, server.base_url + "/notify"


def _sdk_verifies(peer: ServedAlipayPeer, fields: dict[str, str]) -> bool:
    oracle = AliPay(
        appid=TEST_ALIPAY_APP_ID,
        app_private_key_string=peer.keys.app_private,
        alipay_public_key_string=peer.keys.alipay_public,
    )
    unsigned = {k: v for k, v in fields.items() if k != "sign"}
    return bool(oracle.verify(unsigned, fields["sign"]))


async def test_a_notification_is_retried_until_exactly_success(
    merchant: Merchant, receiver_server: tuple[Receiver, str]
) -> None:
    receiver, url = receiver_server
    receiver.answers = ["fail", "success\n", "SUCCESS", "success"]
    peer = merchant.peer
    await merchant.call(
        "alipay.trade.precreate", {"out_trade_no": "WD-PEER-13", "total_amount": "9.90", "subject": "s"}, notify_url=url
    )
    delivery = peer.pay("WD-PEER-13")
    assert delivery is not None
    last = await delivery.wait_delivered()
    assert (last.number, [a.ok for a in delivery.attempts]) == (4, [False, False, False, True])
    assert len({r["notify_id"] for r in receiver.received}) == 1  # the same notification each time
    fields = receiver.received[0]
    assert _sdk_verifies(peer, fields)
    assert (fields["trade_status"], fields["total_amount"], fields["app_id"], fields["seller_id"]) == (
        "TRADE_SUCCESS",
        "9.90",
        peer.app_id,
        peer.seller_id,
    )
    assert fields["notify_type"] == "trade_status_sync"
    assert fields["out_trade_no"] == "WD-PEER-13"
    assert fields["trade_no"] == peer.trade("WD-PEER-13").trade_no


async def test_manual_retries_wait_for_a_nudge(
    alipay_peer: ServedAlipayPeer, receiver_server: tuple[Receiver, str]
) -> None:
    receiver, url = receiver_server
    receiver.answers = ["fail", "success"]
    alipay_peer.retry_delays = None
    async with httpx.AsyncClient(base_url=alipay_peer.base_url) as http:
        merchant = Merchant(alipay_peer, http)
        await merchant.call(
            "alipay.trade.precreate",
            {"out_trade_no": "WD-PEER-14", "total_amount": "1.00", "subject": "s"},
            notify_url=url,
        )
    delivery = alipay_peer.pay("WD-PEER-14")
    assert delivery is not None
    [first] = await delivery.wait_attempts(1)
    assert (first.status, first.body) == (200, "fail")
    with pytest.raises(TimeoutError):
        await delivery.wait_attempts(2, within=0.3)  # nothing moves without the nudge
    delivery.nudge()
    assert (await delivery.wait_delivered()).number == 2


async def test_forged_and_modified_notifications_do_not_verify(
    alipay_peer: ServedAlipayPeer, merchant: Merchant
) -> None:
    await _paid(merchant, "WD-PEER-15", "9.90")
    assert _sdk_verifies(alipay_peer, alipay_peer.notification("WD-PEER-15"))
    assert not _sdk_verifies(alipay_peer, alipay_peer.notification("WD-PEER-15", forged=True))
    modified = alipay_peer.notification("WD-PEER-15", total_amount="0.01")
    assert _sdk_verifies(alipay_peer, modified)  # re-signed after the change: only checks catch it
    assert modified["total_amount"] == "0.01"
    tampered = {**alipay_peer.notification("WD-PEER-15"), "total_amount": "0.01"}
    assert not _sdk_verifies(alipay_peer, tampered)


async def test_a_refund_notifies_the_payments_notify_url(
    merchant: Merchant, receiver_server: tuple[Receiver, str]
) -> None:
    receiver, url = receiver_server
    peer = merchant.peer
    await merchant.call(
        "alipay.trade.precreate", {"out_trade_no": "WD-PEER-16", "total_amount": "9.90", "subject": "s"}, notify_url=url
    )
    peer.pay("WD-PEER-16", notify=False)
    await _refund(merchant, "WD-PEER-16", "4.00", "R1")
    await _refund(merchant, "WD-PEER-16", "5.90", "R2")
    await peer.wait_idle()
    by_request = {r["out_biz_no"]: r for r in receiver.received}
    assert set(by_request) == {"R1", "R2"}
    assert (by_request["R1"]["refund_fee"], by_request["R1"]["trade_status"]) == ("4.00", "TRADE_SUCCESS")
    assert (by_request["R2"]["refund_fee"], by_request["R2"]["trade_status"]) == ("9.90", "TRADE_CLOSED")
    assert by_request["R2"]["gmt_refund"]
    assert by_request["R2"]["gmt_close"]
    assert by_request["R1"]["notify_id"] != by_request["R2"]["notify_id"]
    assert all(_sdk_verifies(peer, r) for r in receiver.received)


async def test_the_http_hooks_pay_and_scan(merchant: Merchant) -> None:
    await merchant.precreate("WD-PEER-17")
    assert (await merchant.http.post("/__peer/scan/WD-PEER-17")).status_code == 200
    paid = await merchant.http.post("/__peer/pay/WD-PEER-17", params={"notify": "0"})
    assert paid.json() == {"trade_no": merchant.peer.trade("WD-PEER-17").trade_no, "notify_id": None}
    query = await merchant.call("alipay.trade.query", {"out_trade_no": "WD-PEER-17"})
    assert query["trade_status"] == "TRADE_SUCCESS"
    assert (await merchant.http.post("/__peer/pay/WD-NOPE")).status_code == 404
