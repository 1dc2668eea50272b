"""Local peer of WeChat Pay API v3 (design/protocols.md §2, "Local test peer").

What it checks on every request: the ``WECHATPAY2-SHA256-RSA2048`` Authorization with all five
fields, the merchant id and certificate serial, a timestamp within 300 s, and the RSA-SHA256
signature over ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`` with the merchant public key
(else 401 ``SIGN_ERROR``), and JSON ``Accept``/``Content-Type`` (else 400 ``INVALID_REQUEST``).
Every answer, errors and 204s included, is signed with the platform key as WeChat Pay signs it.

It keeps orders and refunds as WeChat Pay does (``OUT_TRADE_NO_USED``, ``ORDER_CLOSED``,
``NOTPAY`` until paid, refunds ``PROCESSING`` until a test completes them) and, on a test hook,
sends encrypted (AEAD_AES_256_GCM under the APIv3 key) and signed notifications to the order's
``notify_url``: first one probe with a corrupted signature, then the real one, retried on a
scaled-down copy of WeChat Pay's schedule until the answer is 200 or 204.

The protocol side is synchronous under one lock: the server thread and the test share the state.
Signing, encryption and delivery live in ``wechatpay_notify.py``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.peers.wechatpay_notify import (
    DEFAULT_TIME_SCALE,
    SIGNATURE_TYPE,
    WECHAT_RETRY_INTERVALS,
    Delivery,
    Notice,
    WeChatPayKeys,
    aes_gcm_encrypt,
    china_time,
    generated_keys,
    nonce32,
    post_notice,
    rsa_sign,
    rsa_verify,
)

Clock = Callable[[], float]
Answer = tuple[int, dict[str, Any] | None]

# Obviously fake merchant identity shared by the peer fixture and the tests. The keys themselves
# (and the APIv3 key) are generated at run time: no key material is ever committed.
TEST_MCHID = "1900000109"
TEST_APPID = "wxd0000000000test"
TEST_MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7200000000"
TEST_PUBLIC_KEY_ID = "PUB_KEY_ID_0119000000000000000000000000TEST"

SKEW_SECONDS = 300

_AUTH_FIELDS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
_AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')
_JSON_TYPE = "application/json"


def _error(status: int, code: str, message: str) -> Answer:
    return status, {"code": code, "message": message}


# -- state ---------------------------------------------------------------------------------------


@dataclass
class PeerOrder:
    out_trade_no: str
    trade_type: str  # JSAPI or NATIVE
    params: dict[str, Any]  # the create request's body, compared on a re-order
    prepay_id: str
    code_url: str
    created_at: float
    state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: float | None = None

    @property
    def total(self) -> int:
        return int(self.params["amount"]["total"])

    @property
    def notify_url(self) -> str:
        return str(self.params["notify_url"])

    @property
    def openid(self) -> str:
        payer = self.params.get("payer") or {}
        return str(payer.get("openid") or "o-test-native-payer-0000000000")


@dataclass
class PeerRefund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    amount: int
    params: dict[str, Any]
    created_at: float
    status: str = "PROCESSING"
    success_time: float | None = None


class WeChatPayPeer:
    """State and behaviour of the peer; the Starlette app only moves bytes in and out."""

    def __init__(
        self,
        keys: WeChatPayKeys | None = None,
        *,
        mchid: str = TEST_MCHID,
        appid: str = TEST_APPID,
        merchant_serial: str = TEST_MERCHANT_SERIAL,
        public_key_id: str = TEST_PUBLIC_KEY_ID,
        clock: Clock = time.time,
        retry_intervals: tuple[float, ...] = WECHAT_RETRY_INTERVALS,
        time_scale: float = DEFAULT_TIME_SCALE,
        send_probe: bool = True,
    ) -> None:
        self.keys = keys or generated_keys()
        self.mchid = mchid
        self.appid = appid
        self.merchant_serial = merchant_serial
        self.public_key_id = public_key_id
        self.clock = clock
        self.retry_intervals = retry_intervals
        self.time_scale = time_scale
        self.send_probe = send_probe
        self.orders: dict[str, PeerOrder] = {}
        self.refunds: dict[str, PeerRefund] = {}
        # (operation, out_trade_no) -> requests that passed the signature check; operations are
        # create, query, close, refund (keyed by the refund's trade) and refund_query.
        self.calls: Counter[tuple[str, str]] = Counter()
        self.rejected: Counter[str] = Counter()  # error code -> requests refused with it
        self.deliveries: list[Delivery] = []
        self._faults: list[tuple[int, str]] = []
        self._bad_response_signatures = 0
        self._merchant_public = self.keys.merchant.public_key
        self._platform_private = self.keys.platform.private_key
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- test controls -------------------------------------------------------------------------

    def count(self, operation: str, out_trade_no: str) -> int:
        with self._lock:
            return self.calls[(operation, out_trade_no)]

    def order(self, out_trade_no: str) -> PeerOrder:
        with self._lock:
            return copy.deepcopy(self.orders[out_trade_no])

    def refunds_of(self, out_trade_no: str) -> list[PeerRefund]:
        with self._lock:
            return [copy.deepcopy(r) for r in self.refunds.values() if r.out_trade_no == out_trade_no]

    def fail_next(self, count: int, *, status: int = 500, code: str = "SYSTEM_ERROR") -> None:
        """Answer the next ``count`` signed requests with this error (after checking the signature)."""
        with self._lock:
            self._faults.extend([(status, code)] * count)

    def corrupt_next_response_signatures(self, count: int) -> None:
        """Sign the next ``count`` answers wrongly, as a man in the middle would."""
        with self._lock:
            self._bad_response_signatures += count

    def mark_paid(self, out_trade_no: str) -> PeerOrder:
        """The payer paid; no notification is sent (a lost one, for reconciliation)."""
        with self._lock:
            order = self.orders[out_trade_no]
            if order.state != "NOTPAY":
                raise ValueError(f"order {out_trade_no} is {order.state}")
            order.state = "SUCCESS"
            order.transaction_id = "42000" + str(secrets.randbelow(10**23)).zfill(23)
            order.success_time = self.clock()
            return copy.deepcopy(order)

    def pay(self, out_trade_no: str, *, hold_retries: bool = False) -> Delivery:
        """The payer paid: notify ``TRANSACTION.SUCCESS`` (probe first, then retries until 2xx).
        Call from a running event loop; the delivery runs in it."""
        self.mark_paid(out_trade_no)
        return self.deliver(self.payment_notice(out_trade_no), hold_retries=hold_retries)

    def succeed_refund(self, out_refund_no: str, *, notify: bool = True, hold_retries: bool = False) -> Delivery | None:
        """The refund reached the payer: ``SUCCESS`` and a ``REFUND.SUCCESS`` notification."""
        with self._lock:
            refund = self.refunds[out_refund_no]
            if refund.status != "PROCESSING":
                raise ValueError(f"refund {out_refund_no} is {refund.status}")
            refund.status = "SUCCESS"
            refund.success_time = self.clock()
        if not notify:
            return None
        return self.deliver(self.refund_notice(out_refund_no), hold_retries=hold_retries)

    def transaction(self, out_trade_no: str) -> dict[str, Any]:
        """The order object, as a query answers it and a payment notification carries it."""
        with self._lock:
            return self._transaction(self.orders[out_trade_no])

    def refund_resource(self, out_refund_no: str) -> dict[str, Any]:
        with self._lock:
            refund = self.refunds[out_refund_no]
            order = self.orders[refund.out_trade_no]
            resource: dict[str, Any] = {
                "mchid": self.mchid,
                "out_trade_no": refund.out_trade_no,
                "transaction_id": order.transaction_id,
                "out_refund_no": refund.out_refund_no,
                "refund_id": refund.refund_id,
                "refund_status": refund.status,
                "user_received_account": "支付用户零钱",
                "amount": {
                    "total": order.total,
                    "refund": refund.amount,
                    "payer_total": order.total,
                    "payer_refund": refund.amount,
                },
            }
            if refund.success_time is not None:
                resource["success_time"] = china_time(refund.success_time)
            return resource

    def payment_notice(self, out_trade_no: str, /, **overrides: Any) -> Notice:
        """The ``TRANSACTION.SUCCESS`` notification of a paid order; ``overrides`` replace fields
        of the decrypted resource (a wrong amount, another merchant)."""
        resource = self.transaction(out_trade_no) | overrides
        return self.notice("TRANSACTION.SUCCESS", resource, url=self.order(out_trade_no).notify_url)

    def refund_notice(self, out_refund_no: str, /, **overrides: Any) -> Notice:
        resource = self.refund_resource(out_refund_no) | overrides
        with self._lock:
            refund = self.refunds[out_refund_no]
            url = str(refund.params.get("notify_url") or self.orders[refund.out_trade_no].notify_url)
        event = f"REFUND.{resource.get('refund_status', 'SUCCESS')}"
        return self.notice(event, resource, url=url)

    def notice(
        self,
        event_type: str,
        resource: Mapping[str, Any],
        *,
        url: str,
        event_id: str | None = None,
        timestamp: int | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
        apiv3_key: str | None = None,
    ) -> Notice:
        """Encrypt ``resource`` and sign the whole notification as WeChat Pay does."""
        original_type = "transaction" if event_type.startswith("TRANSACTION.") else "refund"
        sealed = aes_gcm_encrypt(
            apiv3_key or self.keys.apiv3_key, json.dumps(resource, ensure_ascii=False), original_type
        )
        event_id = event_id or str(uuid.uuid4())
        envelope = {
            "id": event_id,
            "create_time": china_time(self.clock()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "支付成功" if original_type == "transaction" else "退款成功",
            "resource": {"original_type": original_type, "associated_data": original_type, **sealed},
        }
        body = json.dumps(envelope, ensure_ascii=False).encode()
        return self.sign_notice(body, url=url, event_id=event_id, timestamp=timestamp, signing_key=signing_key)

    def sign_notice(
        self,
        body: bytes,
        *,
        url: str,
        event_id: str = "",
        timestamp: int | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
    ) -> Notice:
        stamp = str(int(self.clock()) if timestamp is None else timestamp)
        nonce = nonce32()
        signature = rsa_sign(signing_key or self._platform_private, f"{stamp}\n{nonce}\n{body.decode()}\n")
        headers = {
            "Content-Type": _JSON_TYPE,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": self.public_key_id,
            "Wechatpay-Signature": signature,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
            "Wechatpay-Timestamp": stamp,
        }
        return Notice(body, headers, event_id, url)

    @staticmethod
    def probe_of(notice: Notice) -> Notice:
        """The same notification with a corrupted signature (WeChat Pay's signature probe)."""
        signature = bytearray(base64.b64decode(notice.headers["Wechatpay-Signature"]))
        signature[len(signature) // 2] ^= 0x01
        headers = notice.headers | {"Wechatpay-Signature": base64.b64encode(bytes(signature)).decode()}
        return Notice(notice.body, headers, notice.event_id, notice.url)

    def deliver(self, notice: Notice, *, hold_retries: bool = False, probe: bool | None = None) -> Delivery:
        """POST ``notice`` until it is answered 200/204 or the schedule runs out. With
        ``hold_retries`` every retry waits for ``Delivery.retry_now()``."""
        intervals = tuple(i * self.time_scale for i in self.retry_intervals)
        delivery = Delivery(notice, intervals, hold_retries=hold_retries)
        with self._lock:
            self.deliveries.append(delivery)
        task = asyncio.get_running_loop().create_task(self._run(delivery, self.send_probe if probe is None else probe))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def _run(self, delivery: Delivery, probe: bool) -> None:
        if probe:
            delivery._record(await post_notice(self.probe_of(delivery.notice)), probe=True)
        for index in range(len(delivery.intervals) + 1):
            if index:
                await delivery._pause(delivery.intervals[index - 1])
            attempt = await post_notice(delivery.notice)
            delivery._record(attempt)
            if delivery.delivered:
                return

    async def aclose(self) -> None:
        """Stop deliveries still retrying (a test that ends early leaves none behind)."""
        loop = asyncio.get_running_loop()
        for delivery in list(self.deliveries):
            delivery.hold_retries = False
            delivery.retry_now()
        ours = [task for task in self._tasks if task.get_loop() is loop]
        for task in ours:
            task.cancel()
        if ours:
            await asyncio.wait(ours)

    # -- protocol ------------------------------------------------------------------------------

    def handle(
        self, *, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request; ``target`` is the path with its query as sent. Returns the status,
        the headers to add (signature included) and the body."""
        with self._lock:
            status, answer = self._dispatch(method, target, headers, body)
            if answer is not None and status >= 400:
                self.rejected[str(answer.get("code"))] += 1
            content = b"" if answer is None else json.dumps(answer, ensure_ascii=False).encode()
            return status, self._signed_headers(content), content

    def _signed_headers(self, content: bytes) -> dict[str, str]:
        stamp = str(int(self.clock()))
        nonce = nonce32()
        signature = rsa_sign(self._platform_private, f"{stamp}\n{nonce}\n{content.decode()}\n")
        if self._bad_response_signatures > 0:
            self._bad_response_signatures -= 1
            signature = rsa_sign(self._platform_private, f"{stamp}\n{nonce}\ntampered\n")
        out = {
            "Request-ID": f"08{secrets.token_hex(16).upper()}",
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": self.public_key_id,
            "Wechatpay-Signature": signature,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
            "Wechatpay-Timestamp": stamp,
        }
        if content:
            out["Content-Type"] = "application/json; charset=utf-8"
        return out

    def _authorized(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> bool:
        scheme, _, params = headers.get("authorization", "").partition(" ")
        if scheme != SIGNATURE_TYPE:
            return False
        fields = dict(_AUTH_FIELD.findall(params))
        if any(not fields.get(name) for name in _AUTH_FIELDS):
            return False
        if fields["mchid"] != self.mchid or fields["serial_no"] != self.merchant_serial:
            return False
        try:
            stamp = int(fields["timestamp"])
        except ValueError:
            return False
        if abs(self.clock() - stamp) > SKEW_SECONDS:
            return False
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return False
        message = f"{method}\n{target}\n{fields['timestamp']}\n{fields['nonce_str']}\n{text}\n"
        return rsa_verify(self._merchant_public, message, fields["signature"])

    def _dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        path, _, query_text = target.partition("?")
        if _JSON_TYPE not in headers.get("accept", ""):
            return _error(400, "INVALID_REQUEST", "Accept 应为 application/json")
        if method == "POST" and not headers.get("content-type", "").startswith(_JSON_TYPE):
            return _error(400, "INVALID_REQUEST", "Content-Type 应为 application/json")
        if not self._authorized(method, target, headers, body):
            return _error(401, "SIGN_ERROR", "签名错误")
        params: dict[str, Any] = {}
        if method == "POST":
            try:
                parsed = json.loads(body)
            except ValueError:
                return _error(400, "PARAM_ERROR", "请求体不是合法的 JSON")
            if not isinstance(parsed, dict):
                return _error(400, "PARAM_ERROR", "请求体不是合法的 JSON")
            params = parsed
        query = dict(pair.partition("=")[::2] for pair in query_text.split("&") if pair)
        segments = path.strip("/").split("/")
        route = self._route(method, segments)
        if route is None:
            return _error(404, "NOT_FOUND", "请求的资源不存在")
        operation, key, handler = route
        self.calls[(operation, key or params.get("out_trade_no", ""))] += 1
        if self._faults:
            status, code = self._faults.pop(0)
            return _error(status, code, "系统错误")
        return handler(key, params, query)

    def _route(
        self, method: str, segments: list[str]
    ) -> tuple[str, str, Callable[[str, dict[str, Any], dict[str, str]], Answer]] | None:
        match method, segments:
            case "POST", ["v3", "pay", "transactions", ("jsapi" | "native") as kind]:
                return "create", "", lambda _, p, __: self._create(kind.upper(), p)
            case "GET", ["v3", "pay", "transactions", "out-trade-no", no]:
                return "query", no, self._query
            case "GET", ["v3", "pay", "transactions", "id", transaction_id]:
                found = next((o for o in self.orders.values() if o.transaction_id == transaction_id), None)
                return "query", found.out_trade_no if found else transaction_id, self._query
            case "POST", ["v3", "pay", "transactions", "out-trade-no", no, "close"]:
                return "close", no, self._close
            case "POST", ["v3", "refund", "domestic", "refunds"]:
                return "refund", "", lambda _, p, __: self._refund(p)
            case "GET", ["v3", "refund", "domestic", "refunds", no]:
                refund = self.refunds.get(no)
                return "refund_query", refund.out_trade_no if refund else no, lambda *_: self._refund_query(no)
        return None

    def _transaction(self, order: PeerOrder) -> dict[str, Any]:
        body: dict[str, Any] = {
            "appid": order.params["appid"],
            "mchid": order.params["mchid"],
            "out_trade_no": order.out_trade_no,
            "trade_type": order.trade_type,
            "trade_state": order.state,
            "trade_state_desc": {
                "NOTPAY": "订单未支付",
                "SUCCESS": "支付成功",
                "CLOSED": "订单已关闭",
                "REFUND": "转入退款",
            }[order.state],
            "attach": order.params.get("attach", ""),
            "amount": {"total": order.total, "currency": "CNY", "payer_currency": "CNY"},
        }
        if order.transaction_id is not None:
            body["transaction_id"] = order.transaction_id
            body["bank_type"] = "OTHERS"
            body["payer"] = {"openid": order.openid}
            body["amount"]["payer_total"] = order.total
        if order.success_time is not None:
            body["success_time"] = china_time(order.success_time)
        return body

    def _create(self, trade_type: str, params: dict[str, Any]) -> Answer:
        amount = params.get("amount")
        required = ("appid", "mchid", "description", "out_trade_no", "notify_url")
        if any(not isinstance(params.get(name), str) or not params[name] for name in required):
            return _error(400, "PARAM_ERROR", "缺少必填参数")
        if not isinstance(amount, dict) or not isinstance(amount.get("total"), int) or amount["total"] <= 0:
            return _error(400, "PARAM_ERROR", "amount.total 应为正整数（分）")
        if len(params["description"]) > 127 or not 6 <= len(params["out_trade_no"]) <= 32:
            return _error(400, "PARAM_ERROR", "参数长度不正确")
        if trade_type == "JSAPI" and not (params.get("payer") or {}).get("openid"):
            return _error(400, "PARAM_ERROR", "JSAPI 下单需要 payer.openid")
        if params["mchid"] != self.mchid or params["appid"] != self.appid:
            return _error(400, "APPID_MCHID_NOT_MATCH", "appid 和 mch_id 不匹配")
        no = params["out_trade_no"]
        existing = self.orders.get(no)
        if existing is not None:
            if existing.state == "CLOSED":
                return _error(400, "ORDER_CLOSED", "订单已关闭")
            if existing.state in ("SUCCESS", "REFUND"):
                return _error(400, "ORDERPAID", "该订单已支付")
            if existing.trade_type != trade_type or existing.params != params:
                return _error(403, "OUT_TRADE_NO_USED", "商户订单号重复")
            order = existing
        else:
            order = PeerOrder(
                out_trade_no=no,
                trade_type=trade_type,
                params=copy.deepcopy(params),
                prepay_id=f"wx{secrets.token_hex(16)}",
                code_url=f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(6)}",
                created_at=self.clock(),
            )
            self.orders[no] = order
        if trade_type == "JSAPI":
            return 200, {"prepay_id": order.prepay_id}
        return 200, {"code_url": order.code_url}

    def _query(self, no: str, _: dict[str, Any], query: dict[str, str]) -> Answer:
        if not query.get("mchid"):
            return _error(400, "PARAM_ERROR", "缺少 mchid")
        if query["mchid"] != self.mchid:
            return _error(400, "APPID_MCHID_NOT_MATCH", "mchid 不匹配")
        order = self.orders.get(no) or next((o for o in self.orders.values() if o.transaction_id == no), None)
        if order is None:
            return _error(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, self._transaction(order)

    def _close(self, no: str, params: dict[str, Any], _: dict[str, str]) -> Answer:
        if params.get("mchid") != self.mchid:
            return _error(400, "PARAM_ERROR" if not params.get("mchid") else "APPID_MCHID_NOT_MATCH", "mchid 不匹配")
        order = self.orders.get(no)
        if order is None:
            return _error(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.state in ("SUCCESS", "REFUND"):
            return _error(400, "ORDERPAID", "该订单已支付")
        order.state = "CLOSED"
        return 204, None

    def _refund(self, params: dict[str, Any]) -> Answer:
        no = params.get("out_refund_no")
        amount = params.get("amount")
        if not isinstance(no, str) or not no or not isinstance(amount, dict):
            return _error(400, "PARAM_ERROR", "缺少必填参数")
        refund_fen, total = amount.get("refund"), amount.get("total")
        if not isinstance(refund_fen, int) or not isinstance(total, int) or refund_fen <= 0:
            return _error(400, "PARAM_ERROR", "amount.refund 应为正整数（分）")
        trade_no = params.get("out_trade_no")
        order = self.orders.get(trade_no) if isinstance(trade_no, str) else None
        if order is None and params.get("transaction_id"):
            order = next((o for o in self.orders.values() if o.transaction_id == params["transaction_id"]), None)
        if order is None:
            return _error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        existing = self.refunds.get(no)
        if existing is not None:
            if existing.out_trade_no != order.out_trade_no or existing.amount != refund_fen:
                return _error(400, "INVALID_REQUEST", "退款单号已用于另一笔退款")
            return 200, self._refund_body(existing)
        if order.state not in ("SUCCESS", "REFUND"):
            return _error(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if total != order.total:
            return _error(400, "INVALID_REQUEST", "订单金额与原订单不一致")
        taken = sum(r.amount for r in self.refunds.values() if r.out_trade_no == order.out_trade_no)
        if taken + refund_fen > order.total:
            return _error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        refund = PeerRefund(
            out_refund_no=no,
            refund_id=f"50000{secrets.randbelow(10**24):024d}",
            out_trade_no=order.out_trade_no,
            amount=refund_fen,
            params=copy.deepcopy(params),
            created_at=self.clock(),
        )
        self.refunds[no] = refund
        order.state = "REFUND"
        return 200, self._refund_body(refund)

    def _refund_body(self, refund: PeerRefund) -> dict[str, Any]:
        order = self.orders[refund.out_trade_no]
        body: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": china_time(refund.created_at),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": order.total,
                "refund": refund.amount,
                "payer_total": order.total,
                "payer_refund": refund.amount,
                "settlement_total": order.total,
                "settlement_refund": refund.amount,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }
        if refund.success_time is not None:
            body["success_time"] = china_time(refund.success_time)
        return body

    def _refund_query(self, no: str) -> Answer:
        refund = self.refunds.get(no)
        if refund is None:
            return _error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, self._refund_body(refund)

    # -- HTTP test hooks -------------------------------------------------------------------------

    def hook(self, action: str, no: str) -> Answer:
        """``/__peer/pay/{out_trade_no}`` and ``/__peer/refund/{out_refund_no}/succeed``: the same
        as ``pay`` and ``succeed_refund``, for a client outside the test process."""
        try:
            delivery = self.pay(no) if action == "pay" else self.succeed_refund(no)
        except (KeyError, ValueError) as exc:
            return 409, {"error": str(exc)}
        return 202, {"event_id": delivery.notice.event_id if delivery else None}


def create_wechatpay_app(peer: WeChatPayPeer) -> Starlette:
    """The ASGI app; tests may replace ``app.state.peer`` to start from fresh state."""

    async def api(request: Request) -> Response:
        current: WeChatPayPeer = request.app.state.peer
        body = await request.body()
        # The exact bytes of the request target: the signature covers the path as sent.
        target = request.scope["raw_path"].decode()
        if request.scope.get("query_string"):
            target += "?" + request.scope["query_string"].decode()
        status, headers, content = current.handle(
            method=request.method, target=target, headers=request.headers, body=body
        )
        return Response(content, status_code=status, headers=headers)

    async def pay_hook(request: Request) -> Response:
        current: WeChatPayPeer = request.app.state.peer
        status, answer = current.hook("pay", request.path_params["no"])
        return JSONResponse(answer, status_code=status)

    async def refund_hook(request: Request) -> Response:
        current: WeChatPayPeer = request.app.state.peer
        status, answer = current.hook("refund", request.path_params["no"])
        return JSONResponse(answer, status_code=status)

    app = Starlette(
        routes=[
            Route("/__peer/pay/{no}", pay_hook, methods=["POST"]),
            Route("/__peer/refund/{no}/succeed", refund_hook, methods=["POST"]),
            Route("/{path:path}", api, methods=["GET", "POST"]),
        ]
    )
    app.state.peer = peer
    return app
