"""Local peer of the Alipay open-platform gateway, RSA2 (design/protocols.md §3).

What it checks, as Alipay does: the common parameters (``app_id``, ``charset``, ``sign_type=RSA2``,
``version``, a GMT+8 ``timestamp`` at most ten minutes off) and the RSA2 signature over every
non-empty parameter but ``sign``, sorted, ``sign_type`` included, verified with the app public key.
What it answers: ``{"<method>_response":{…},"sign":"…"}`` where the signature covers the exact JSON
text of the response object, business errors included. What it keeps: trades by ``out_trade_no``
(invisible to ``alipay.trade.query`` until the buyer scans or pays), refunds idempotent on
``out_request_no``. What it sends: form notifications signed over the sorted fields without
``sign``/``sign_type``, posted to the trade's ``notify_url`` until the answer is exactly ``success``,
on Alipay's schedule scaled down (or, with ``retry_delays=None``, only when a test nudges).

Request handling is synchronous under one lock (the server thread and the test share the state);
deliveries (``tests/peers/delivery.py``) run as asyncio tasks in the loop that started them, and
``Changes`` wakes waiters in any loop, so tests await events ("attempt n", "delivered") instead of
sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.peers.delivery import Changes, RetriedDelivery, post_until_accepted

Clock = Callable[[], float]

# Obviously fake identities, shared by the fixtures and the tests.
TEST_ALIPAY_APP_ID = "2021000000000001"
TEST_ALIPAY_SELLER_ID = "2088000000000001"
GATEWAY_PATH = "/gateway.do"

CHINA = timezone(timedelta(hours=8))
STAMP = "%Y-%m-%d %H:%M:%S"
MAX_SKEW_SECONDS = 600
# Alipay retries a notification not answered ``success``: 8 tries within 25 h (protocols.md).
ALIPAY_RETRY_DELAYS = (240.0, 600.0, 600.0, 3600.0, 7200.0, 21600.0, 54000.0)
# Scaled down 2000x for tests: 4 min -> 0.12 s, 15 h -> 27 s.
SCALED_RETRY_DELAYS = tuple(delay / 2000 for delay in ALIPAY_RETRY_DELAYS)

PAY_METHODS = {"alipay.trade.page.pay": "FAST_INSTANT_TRADE_PAY", "alipay.trade.wap.pay": "QUICK_WAP_WAY"}
_AMOUNT = re.compile(r"^(0|[1-9]\d{0,9})(\.\d{1,2})?$")
_JSON = "application/json;charset=utf-8"


def generate_key_pair() -> tuple[str, str]:
    """A fresh RSA-2048 pair as PEM (private PKCS#8, public SubjectPublicKeyInfo); never stored."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def rsa2_sign(private_pem: str, message: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(public_pem: str, message: str, signature: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(base64.b64decode(signature, validate=True), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def signing_string(params: Mapping[str, str], without: tuple[str, ...] = ("sign",)) -> str:
    """The peer's own copy of the rule (not the client's under test): sorted non-empty ``k=v``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in without and params[k] != "")


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def to_fen(text: object) -> int | None:
    if not isinstance(text, str) or not _AMOUNT.match(text):
        return None
    whole, _, cents = text.partition(".")
    return int(whole) * 100 + int((cents + "00")[:2])


class GatewayError(Exception):
    """An answer other than 10000, rendered (and signed) as the ``*_response`` object."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(f"{code} {sub_code}")
        self.body = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def _invalid(sub_code: str, sub_msg: str) -> GatewayError:
    return GatewayError("40002", "Invalid Arguments", sub_code, sub_msg)


def _missing(sub_code: str, sub_msg: str) -> GatewayError:
    return GatewayError("40001", "Missing Required Arguments", sub_code, sub_msg)


def _business(sub_code: str, sub_msg: str) -> GatewayError:
    return GatewayError("40004", "Business Failed", sub_code, sub_msg)


@dataclass(slots=True)
class PeerRefund:
    out_request_no: str
    amount_fen: int
    reason: str
    gmt_refund: str
    notify_id: str


@dataclass(slots=True)
class PeerTrade:
    out_trade_no: str
    trade_no: str
    total_fen: int
    subject: str
    method: str
    notify_url: str
    gmt_create: str
    qr_code: str = ""
    product_code: str = ""
    time_expire: str = ""
    visible: bool = False  # alipay.trade.query knows a trade once the buyer scanned or paid
    status: str = "WAIT_BUYER_PAY"
    gmt_payment: str = ""
    gmt_close: str = ""
    notify_id: str = ""
    buyer_id: str = field(default_factory=lambda: "2088" + "".join(secrets.choice("0123456789") for _ in range(12)))
    refunds: dict[str, PeerRefund] = field(default_factory=dict)

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds.values())


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    status: int | None  # None: no HTTP answer at all
    body: str

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body == "success"


Observer = Callable[["Delivery", Attempt], Awaitable[None]]


class Delivery(RetriedDelivery[Attempt]):
    """One notification and its tries: the same fields (and ``notify_id``) every time."""

    def __init__(self, peer: AlipayPeer, url: str, fields: dict[str, str]) -> None:
        super().__init__(peer.changes)
        self.peer = peer
        self.url = url
        self.fields = dict(fields)
        self._nudges = 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def notify_id(self) -> str:
        return self.fields.get("notify_id", "")

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    def nudge(self) -> None:
        """Retry now instead of at the next scheduled time (the only trigger when manual)."""
        self._nudges += 1
        self.peer.changes.fire()

    async def wait_delivered(self, within: float = 30.0) -> Attempt:
        await self.peer.changes.wait_for(lambda: self.finished, within)
        if self.error is not None:
            raise self.error
        if not self.delivered:
            raise AssertionError(f"gave up after {[(a.status, a.body) for a in self.attempts]}")
        return self.attempts[-1]

    def cancel(self) -> None:
        if self._task is not None and self._loop is not None and not self._task.done():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)

    async def _tries(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            await post_until_accepted(
                lambda number: self.peer.post_notification(self.fields, self.url, http=http, number=number),
                accepted=lambda attempt: attempt.ok,
                retries=len(ALIPAY_RETRY_DELAYS),
                delays=self.peer.retry_delays,
                pause=self._pause,
                record=self._record,
            )

    async def _record(self, attempt: Attempt, accepted: bool, last: bool) -> None:
        if self.peer.observer is not None:
            await self.peer.observer(self, attempt)
        await super()._record(attempt, accepted, last)

    async def _pause(self, delay: float | None) -> None:
        seen = self._nudges
        with contextlib.suppress(TimeoutError):
            await self.peer.changes.wait_for(lambda: self._nudges > seen, delay)


class AlipayPeer:
    """State and behaviour of the gateway; the Starlette app only moves bytes in and out."""

    def __init__(
        self,
        *,
        app_public_key: str,
        app_id: str = TEST_ALIPAY_APP_ID,
        seller_id: str = TEST_ALIPAY_SELLER_ID,
        alipay_key_pair: tuple[str, str] | None = None,
        clock: Clock = time.time,
        retry_delays: tuple[float, ...] | None = SCALED_RETRY_DELAYS,
        notify_refunds: bool = True,
    ) -> None:
        self.app_id = app_id
        self.seller_id = seller_id
        self.app_public_key = app_public_key
        self.alipay_private_key, self.alipay_public_key = alipay_key_pair or generate_key_pair()
        self.clock = clock
        if retry_delays is not None and len(retry_delays) < len(ALIPAY_RETRY_DELAYS):
            raise ValueError(f"one delay per retry: {len(ALIPAY_RETRY_DELAYS)}")
        self.retry_delays = retry_delays
        self.notify_refunds = notify_refunds
        self.observer: Observer | None = None  # awaited after each try, before waiters wake
        self.changes = Changes()
        self.trades: dict[str, PeerTrade] = {}
        self.calls: Counter[tuple[str, str]] = Counter()  # (method, out_trade_no) of signed requests
        self.refused: Counter[str] = Counter()  # sub_code of requests refused before the method ran
        self.fund_changes: list[tuple[str, str, str]] = []  # (out_trade_no, out_request_no, "Y"/"N")
        self.deliveries: list[Delivery] = []
        self._faults: list[tuple[str, str]] = []  # (method, "system_error" | "lost_answer")
        self._outbox: list[tuple[dict[str, str], str]] = []  # notifications to start after the lock
        self._lock = threading.Lock()

    # -- test controls -----------------------------------------------------------------------

    def now(self) -> str:
        return datetime.fromtimestamp(self.clock(), CHINA).strftime(STAMP)

    def trade(self, out_trade_no: str) -> PeerTrade:
        with self._lock:
            return self.trades[out_trade_no]

    def calls_for(self, out_trade_no: str) -> Counter[str]:
        with self._lock:
            return Counter({m: n for (m, no), n in self.calls.items() if no == out_trade_no})

    def fail_next(self, method: str, mode: str = "system_error") -> None:
        """``system_error``: answer 20000 without doing anything; ``lost_answer``: do the work, then
        answer HTTP 502 with no body (the client cannot know what happened)."""
        if mode not in ("system_error", "lost_answer"):
            raise ValueError(mode)
        with self._lock:
            self._faults.append((method, mode))

    def scan(self, out_trade_no: str) -> PeerTrade:
        """The buyer scanned the code (or opened the cashier): the trade now exists for queries."""
        with self._lock:
            trade = self.trades[out_trade_no]
            trade.visible = True
            return trade

    def pay(self, out_trade_no: str, *, notify: bool = True) -> Delivery | None:
        """The buyer pays. With ``notify`` the notification goes to the trade's ``notify_url``
        (delivered by a task in the calling loop); without, only a query will tell."""
        with self._lock:
            trade = self.trades[out_trade_no]
            if trade.status != "WAIT_BUYER_PAY":
                raise ValueError(f"trade {out_trade_no} is {trade.status}")
            trade.visible = True
            trade.status = "TRADE_SUCCESS"
            trade.gmt_payment = self.now()
            trade.notify_id = secrets.token_hex(16)
        if not notify:
            return None
        return self.deliver(self.notification(out_trade_no))

    def notification(self, out_trade_no: str, /, *, forged: bool = False, **overrides: str | None) -> dict[str, str]:
        """The trade's payment notification as Alipay signs it; ``overrides`` change (None drops)
        fields before signing, ``forged`` signs with a key that is not Alipay's."""
        with self._lock:
            trade = self.trades[out_trade_no]
            fields = self._trade_fields(trade)
        return self._finish(fields, overrides, forged)

    def refund_notification(
        self, out_trade_no: str, out_request_no: str, /, *, forged: bool = False, **overrides: str | None
    ) -> dict[str, str]:
        with self._lock:
            trade = self.trades[out_trade_no]
            fields = self._refund_fields(trade, trade.refunds[out_request_no])
        return self._finish(fields, overrides, forged)

    def sign_notification(self, fields: Mapping[str, str], *, private_key: str | None = None) -> dict[str, str]:
        """Sign as Alipay does: sorted fields without ``sign`` and ``sign_type``."""
        signed = {k: v for k, v in fields.items() if k not in ("sign", "sign_type")}
        signed["sign"] = rsa2_sign(private_key or self.alipay_private_key, signing_string(signed))
        signed["sign_type"] = "RSA2"
        return signed

    def deliver(self, fields: dict[str, str], url: str | None = None) -> Delivery:
        """Post ``fields`` to ``url`` (default: the trade's ``notify_url``) until ``success``."""
        target = url or self.trade(fields["out_trade_no"]).notify_url
        if not target:
            raise ValueError("the trade has no notify_url")
        delivery = Delivery(self, target, fields)
        with self._lock:
            self.deliveries.append(delivery)
        delivery.start()
        return delivery

    async def post_notification(
        self, fields: Mapping[str, str], url: str, *, http: httpx.AsyncClient | None = None, number: int = 1
    ) -> Attempt:
        """One try: the form post and what came back (no retry)."""
        body = urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        try:
            if http is None:
                async with httpx.AsyncClient(timeout=30) as own:
                    response = await own.post(url, content=body, headers=headers)
            else:
                response = await http.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            return Attempt(number, None, "")
        return Attempt(number, response.status_code, response.text)

    async def wait_idle(self, within: float = 30.0) -> None:
        """Every delivery started so far delivered or gave up."""
        await self.changes.wait_for(lambda: all(d.finished for d in list(self.deliveries)), within)

    def aclose(self) -> None:
        for delivery in list(self.deliveries):
            delivery.cancel()

    def verify_pay_url(self, url: str) -> PeerTrade:
        """Check a page/wap pay URL our client signed, as the cashier does when the buyer opens it,
        and register the trade it describes. Raises ``GatewayError``."""
        parts = urlsplit(url)
        if parts.path != GATEWAY_PATH:
            raise _invalid("isv.invalid-method", f"not the gateway: {parts.path}")
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        with self._lock:
            method = self._check_common(params)
            if method not in PAY_METHODS:
                raise _invalid("isv.invalid-method", f"not a pay redirect: {method}")
            biz = self._biz(params)
            self.calls[(method, str(biz.get("out_trade_no", "")))] += 1
            return self._open_trade(method, biz, params.get("notify_url", ""))

    # -- protocol -----------------------------------------------------------------------------

    def handle(self, params: Mapping[str, str]) -> tuple[int, str, str]:
        """Answer one gateway request; returns status, media type and text. Notifications the
        request caused (refunds) start in the calling loop once the state is unlocked."""
        try:
            return self._handle(params)
        finally:
            with self._lock:
                outbox, self._outbox = self._outbox, []
            for fields, url in outbox:
                self.deliver(self.sign_notification(fields), url)

    def _handle(self, params: Mapping[str, str]) -> tuple[int, str, str]:
        with self._lock:
            method = params.get("method", "")
            key = (method.replace(".", "_") + "_response") if method in _METHODS else "error_response"
            try:
                self._check_common(params)
                if method in PAY_METHODS:
                    biz = self._biz(params)
                    self.calls[(method, str(biz.get("out_trade_no", "")))] += 1
                    trade = self._open_trade(method, biz, params.get("notify_url", ""))
                    page = f"<html><body>收银台 {trade.out_trade_no} {yuan(trade.total_fen)}</body></html>"
                    return 200, "text/html;charset=utf-8", page
                if method not in _METHODS:
                    raise _invalid("isv.invalid-method", "不存在的方法名")
                biz = self._biz(params)
                self.calls[(method, str(biz.get("out_trade_no", "")))] += 1
                fault = next((f for f in self._faults if f[0] == method), None)
                if fault is not None:
                    self._faults.remove(fault)
                    if fault[1] == "system_error":
                        raise GatewayError("20000", "Service Currently Unavailable", "aop.ACQ.SYSTEM_ERROR", "系统繁忙")
                body = {"code": "10000", "msg": "Success", **_METHODS[method](self, biz, params)}
                if fault is not None:
                    return 502, "text/plain", ""
            except GatewayError as error:
                body = error.body
                if body["code"] in ("40001", "40002"):
                    self.refused[body["sub_code"]] += 1
            return 200, _JSON, self._signed_answer(key, body)

    def _signed_answer(self, key: str, body: Mapping[str, Any]) -> str:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return '{"%s":%s,"sign":"%s"}' % (key, text, rsa2_sign(self.alipay_private_key, text))  # noqa: UP031

    def _check_common(self, params: Mapping[str, str]) -> str:
        method = params.get("method", "")
        if not method:
            raise _missing("isv.missing-method", "缺少方法名参数")
        app_id = params.get("app_id", "")
        if not app_id:
            raise _missing("isv.missing-app-id", "缺少AppID参数")
        if app_id != self.app_id:
            raise _invalid("isv.invalid-app-id", "无效的AppID参数")
        if not params.get("sign"):
            raise _missing("isv.missing-signature", "缺少签名参数")
        if params.get("sign_type") != "RSA2":
            raise _invalid("isv.invalid-signature-type", "无效的签名类型")
        if params.get("charset", "").lower() != "utf-8":
            raise _invalid("isv.invalid-charset", "字符集错误")
        if params.get("version") != "1.0":
            raise _invalid("isv.invalid-version", "版本号错误")
        if params.get("format", "JSON").upper() != "JSON":
            raise _invalid("isv.invalid-format", "无效的数据格式")
        stamp = params.get("timestamp", "")
        if not stamp:
            raise _missing("isv.missing-timestamp", "缺少时间戳参数")
        try:
            sent = datetime.strptime(stamp, STAMP).replace(tzinfo=CHINA).timestamp()
        except ValueError:
            raise _invalid("isv.invalid-timestamp", "非法的时间戳参数") from None
        if abs(sent - self.clock()) > MAX_SKEW_SECONDS:
            raise _invalid("isv.invalid-timestamp", "非法的时间戳参数")
        if not rsa2_verify(self.app_public_key, signing_string(params), params["sign"]):
            raise _invalid("isv.invalid-signature", "验签出错")
        return method

    @staticmethod
    def _biz(params: Mapping[str, str]) -> dict[str, Any]:
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            raise _invalid("isv.invalid-biz-content", "biz_content 不是 JSON") from None
        if not isinstance(biz, dict):
            raise _invalid("isv.invalid-biz-content", "biz_content 不是 JSON 对象")
        return biz

    def _find(self, biz: Mapping[str, Any]) -> PeerTrade:
        no, trade_no = biz.get("out_trade_no"), biz.get("trade_no")
        if not no and not trade_no:
            raise _business("ACQ.INVALID_PARAMETER", "out_trade_no 和 trade_no 不能同时为空")
        trade = (
            self.trades.get(str(no)) if no else next((t for t in self.trades.values() if t.trade_no == trade_no), None)
        )
        if trade is None or not trade.visible:
            raise _business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        return trade

    def _open_trade(self, method: str, biz: Mapping[str, Any], notify_url: str) -> PeerTrade:
        no, subject = str(biz.get("out_trade_no", "")), str(biz.get("subject", ""))
        total = to_fen(biz.get("total_amount"))
        if not no or len(no) > 64 or not subject or total is None or not 1 <= total <= 10_000_000_000:
            raise _business("ACQ.INVALID_PARAMETER", "参数无效")
        product = str(biz.get("product_code", ""))
        if method in PAY_METHODS and product != PAY_METHODS[method]:
            raise _business("ACQ.INVALID_PARAMETER", f"product_code 应为 {PAY_METHODS[method]}")
        expire = str(biz.get("time_expire", ""))
        if expire:
            try:
                datetime.strptime(expire, STAMP)
            except ValueError:
                raise _business("ACQ.INVALID_PARAMETER", "time_expire 格式错误") from None
        existing = self.trades.get(no)
        if existing is not None:
            if existing.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                raise _business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if existing.status == "TRADE_CLOSED":
                raise _business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if (existing.total_fen, existing.subject) != (total, subject):
                raise _business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            return existing
        day = datetime.fromtimestamp(self.clock(), CHINA).strftime("%Y%m%d")
        trade = PeerTrade(
            out_trade_no=no,
            trade_no=f"{day}22001{secrets.randbelow(10**15):015d}",
            total_fen=total,
            subject=subject,
            method=method,
            notify_url=notify_url,
            gmt_create=self.now(),
            qr_code=f"https://qr.alipay.com/bax0{secrets.token_hex(10)}" if method == "alipay.trade.precreate" else "",
            product_code=product,
            time_expire=expire,
        )
        self.trades[no] = trade
        return trade

    def _precreate(self, biz: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
        trade = self._open_trade("alipay.trade.precreate", biz, params.get("notify_url", ""))
        return {"out_trade_no": trade.out_trade_no, "qr_code": trade.qr_code}

    def _query(self, biz: dict[str, Any], _: Mapping[str, str]) -> dict[str, Any]:
        trade = self._find(biz)
        paid = trade.status in ("TRADE_SUCCESS", "TRADE_FINISHED") or (trade.status == "TRADE_CLOSED" and trade.refunds)
        answer: dict[str, Any] = {
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_logon_id": "buy***@example.com",
            "trade_status": trade.status,
            "total_amount": yuan(trade.total_fen),
            "buyer_pay_amount": yuan(trade.total_fen) if paid else "0.00",
            "point_amount": "0.00",
            "invoice_amount": yuan(trade.total_fen) if paid else "0.00",
            "receipt_amount": yuan(trade.total_fen) if paid else "0.00",
            "buyer_user_id": trade.buyer_id,
        }
        if trade.gmt_payment:
            answer["send_pay_date"] = trade.gmt_payment
        return answer

    def _close(self, biz: dict[str, Any], _: Mapping[str, str]) -> dict[str, Any]:
        trade = self._find(biz)
        if trade.status != "WAIT_BUYER_PAY":
            raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade.status = "TRADE_CLOSED"
        trade.gmt_close = self.now()
        return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}

    def _refund(self, biz: dict[str, Any], _: Mapping[str, str]) -> dict[str, Any]:
        amount = to_fen(biz.get("refund_amount"))
        if amount is None or amount <= 0:
            raise _business("ACQ.INVALID_PARAMETER", "退款金额无效")
        trade = self._find(biz)
        # Without out_request_no the refund is keyed by the trade itself: only a full refund.
        key = str(biz.get("out_request_no") or trade.out_trade_no)
        answer = {
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_logon_id": "buy***@example.com",
        }
        earlier = trade.refunds.get(key)
        if earlier is not None:
            if earlier.amount_fen != amount:
                raise _business("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致")
            self.fund_changes.append((trade.out_trade_no, key, "N"))
            return {**answer, "fund_change": "N", "refund_fee": yuan(trade.refunded_fen)}
        if trade.status == "TRADE_CLOSED":
            raise _business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        if trade.status not in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if not biz.get("out_request_no") and amount != trade.total_fen:
            raise _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "部分退款需要 out_request_no")
        if amount > trade.total_fen - trade.refunded_fen:
            raise _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        refund = PeerRefund(key, amount, str(biz.get("refund_reason", "")), self.now(), secrets.token_hex(16))
        trade.refunds[key] = refund
        if trade.refunded_fen == trade.total_fen:
            trade.status = "TRADE_CLOSED"
            trade.gmt_close = refund.gmt_refund
        self.fund_changes.append((trade.out_trade_no, key, "Y"))
        if self.notify_refunds and trade.notify_url:
            self._outbox.append((self._refund_fields(trade, refund), trade.notify_url))
        return {
            **answer,
            "fund_change": "Y",
            "refund_fee": yuan(trade.refunded_fen),
            "gmt_refund_pay": refund.gmt_refund,
        }

    def _refund_query(self, biz: dict[str, Any], _: Mapping[str, str]) -> dict[str, Any]:
        if not biz.get("out_request_no"):
            raise _business("ACQ.INVALID_PARAMETER", "out_request_no 不能为空")
        trade = self._find(biz)
        answer: dict[str, Any] = {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}
        refund = trade.refunds.get(str(biz["out_request_no"]))
        if refund is None:
            return answer  # nothing returned: the refund never arrived (or failed)
        return {
            **answer,
            "out_request_no": refund.out_request_no,
            "total_amount": yuan(trade.total_fen),
            "refund_amount": yuan(refund.amount_fen),
            "refund_status": "REFUND_SUCCESS",
            "gmt_refund_pay": refund.gmt_refund,
        }

    def _trade_fields(self, trade: PeerTrade) -> dict[str, str]:
        total = yuan(trade.total_fen)
        return {
            "notify_type": "trade_status_sync",
            "notify_id": trade.notify_id,
            "notify_time": self.now(),
            "charset": "utf-8",
            "version": "1.0",
            "app_id": self.app_id,
            "auth_app_id": self.app_id,
            "seller_id": self.seller_id,
            "seller_email": "seller@example.com",
            "buyer_id": trade.buyer_id,
            "buyer_logon_id": "buy***@example.com",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "subject": trade.subject,
            "trade_status": trade.status,
            "total_amount": total,
            "receipt_amount": total,
            "invoice_amount": total,
            "buyer_pay_amount": total,
            "point_amount": "0.00",
            "fund_bill_list": json.dumps([{"amount": total, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")),
            "gmt_create": trade.gmt_create,
            "gmt_payment": trade.gmt_payment,
        }

    def _refund_fields(self, trade: PeerTrade, refund: PeerRefund) -> dict[str, str]:
        """A refund notification: the trade's fields as they stand after the refund, plus
        ``out_biz_no`` (the refund's ``out_request_no``), ``refund_fee`` (refunded so far) and
        ``gmt_refund``; a full refund leaves the trade TRADE_CLOSED."""
        fields = self._trade_fields(trade)
        fields.update(
            notify_id=refund.notify_id,
            out_biz_no=refund.out_request_no,
            refund_fee=yuan(sum(r.amount_fen for r in _up_to(list(trade.refunds.values()), refund))),
            gmt_refund=refund.gmt_refund,
        )
        if trade.gmt_close:
            fields["gmt_close"] = trade.gmt_close
        return fields

    def _finish(self, fields: dict[str, str], overrides: Mapping[str, str | None], forged: bool) -> dict[str, str]:
        for name, value in overrides.items():
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = value
        return self.sign_notification(fields, private_key=generate_key_pair()[0] if forged else None)


def _up_to(refunds: list[PeerRefund], last: PeerRefund) -> list[PeerRefund]:
    return refunds[: refunds.index(last) + 1]


_METHODS: dict[str, Callable[[AlipayPeer, dict[str, Any], Mapping[str, str]], dict[str, Any]]] = {
    "alipay.trade.precreate": AlipayPeer._precreate,
    "alipay.trade.query": AlipayPeer._query,
    "alipay.trade.close": AlipayPeer._close,
    "alipay.trade.refund": AlipayPeer._refund,
    "alipay.trade.fastpay.refund.query": AlipayPeer._refund_query,
}


def create_alipay_app(peer: AlipayPeer) -> Starlette:
    """The ASGI app; tests may replace ``app.state.peer`` to start from fresh state."""

    async def gateway(request: Request) -> Response:
        current: AlipayPeer = request.app.state.peer
        # Alipay reads the query and a form body alike (the official SDK splits them).
        params = dict(request.query_params)
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        status, media_type, text = current.handle(params)
        return Response(text.encode("utf-8"), status_code=status, media_type=media_type)

    async def pay_hook(request: Request) -> Response:
        """``POST /__peer/pay/{no}`` (``?notify=0``: pay silently), for clients outside Python."""
        current: AlipayPeer = request.app.state.peer
        no = request.path_params["no"]
        if no not in current.trades:
            return JSONResponse({"error": "no such trade"}, status_code=404)
        delivery = current.pay(no, notify=request.query_params.get("notify", "1") != "0")
        trade = current.trade(no)
        return JSONResponse({"trade_no": trade.trade_no, "notify_id": delivery.notify_id if delivery else None})

    async def scan_hook(request: Request) -> Response:
        current: AlipayPeer = request.app.state.peer
        if request.path_params["no"] not in current.trades:
            return JSONResponse({"error": "no such trade"}, status_code=404)
        return JSONResponse({"trade_no": current.scan(request.path_params["no"]).trade_no})

    async def cashier(request: Request) -> Response:  # a browser opening a page/wap pay URL
        current: AlipayPeer = request.app.state.peer
        try:
            trade = current.verify_pay_url(str(request.url))
        except GatewayError as error:
            return HTMLResponse(f"<html><body>错误 {error.body['sub_code']}</body></html>", status_code=200)
        return HTMLResponse(f"<html><body>收银台 {trade.out_trade_no} {yuan(trade.total_fen)}</body></html>")

    async def entry(request: Request) -> Response:
        if request.method == "GET" and request.query_params.get("method") in PAY_METHODS:
            return await cashier(request)
        return await gateway(request)

    app = Starlette(
        routes=[
            Route(GATEWAY_PATH, entry, methods=["GET", "POST"]),
            Route("/__peer/pay/{no}", pay_hook, methods=["POST"]),
            Route("/__peer/scan/{no}", scan_hook, methods=["POST"]),
        ]
    )
    app.state.peer = peer
    return app
