"""WeChat Pay API v3 through ``wechatpayv3``'s async client in public-key mode.

The SDK signs every request (WECHATPAY2-SHA256-RSA2048), verifies every 2xx answer's signature with
the WeChat Pay public key, and decrypts notifications (AEAD_AES_256_GCM under the APIv3 key). What
it leaves to us, done here: the timestamp window of notifications (±5 min, against replay),
checking that a notification is for our merchant and app, mapping platform codes to
``PlatformUnavailable`` / ``PlatformRefused``, and the ``wx.requestPayment`` parameters.

Its base URL is a private attribute (``_core._gate_way``); the version is pinned in pyproject so
that pointing it at ``WARDROBE_WECHATPAY_API_BASE`` (the local peer in tests) keeps working.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from wardrobe.models import Order, PaymentChannel
from wardrobe.modules.payments.gateway import (
    Notification,
    NotificationKind,
    PlatformRefused,
    PlatformUnavailable,
    RefundResult,
    RefundState,
    SignatureInvalid,
    Trade,
    TradeState,
)

CHINA = timezone(timedelta(hours=8))
NOTIFY_SKEW_SECONDS = 300
_RETRY_LATER = frozenset({"SYSTEM_ERROR", "SERVICE_UNAVAILABLE", "RATELIMIT_EXCEEDED", "FREQUENCY_LIMITED"})
_TRADE_STATES = {
    "SUCCESS": TradeState.PAID,
    "REFUND": TradeState.REFUNDED,
    "NOTPAY": TradeState.PENDING,
    "USERPAYING": TradeState.PENDING,
    "PAYERROR": TradeState.PENDING,
    "CLOSED": TradeState.CLOSED,
    "REVOKED": TradeState.CLOSED,
}
_REFUND_STATES = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PROCESSING,
    "CLOSED": RefundState.FAILED,
    "ABNORMAL": RefundState.FAILED,
}


def china_time(moment: datetime) -> str:
    """RFC 3339 in China time, the form WeChat Pay expects (``2026-11-22T18:30:00+08:00``)."""
    return moment.astimezone(CHINA).replace(microsecond=0).isoformat()


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


class WeChatPayGateway:
    provider = "wechat"

    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        cert_serial_no: str,
        private_key: str,
        apiv3_key: str,
        public_key: str,
        public_key_id: str,
        api_base: str,
        timeout: float = 10.0,
        clock: Any = time.time,
    ) -> None:
        self.mchid = mchid
        self.appid = appid
        self._clock = clock
        # Here, not at the top: the SDK costs every process ~25 MiB, and WeChat Pay is optional.
        # The async client has its own WeChatPayType enum: the top-level one never matches inside it.
        from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType

        self._pay = AsyncWeChatPay(
            wechatpay_type=WeChatPayType.MINIPROG,
            mchid=mchid,
            private_key=private_key,
            cert_serial_no=cert_serial_no,
            appid=appid,
            apiv3_key=apiv3_key,
            public_key=public_key,
            public_key_id=public_key_id,
            timeout=(min(timeout, 5.0), timeout),
        )
        self._pay._core._gate_way = api_base.rstrip("/")
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._pay.__aenter__()
            self._started = True

    async def aclose(self) -> None:
        if self._started:
            await self._pay.__aexit__(None, None, None)
            self._started = False

    async def _call(self, call: Any) -> tuple[int, Any]:
        await self.start()
        try:
            status, text = await call
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(f"wechat pay unreachable: {type(exc).__name__}") from exc
        except Exception as exc:  # the SDK raises a bare Exception when a signature fails
            raise PlatformUnavailable(f"wechat pay answer rejected: {exc}") from exc
        body: Any = {}
        if isinstance(text, str) and text:
            try:
                body = json.loads(text)
            except ValueError:
                body = {}
        if status >= 500 or status == 429:
            raise PlatformUnavailable(f"wechat pay {status} {body.get('code', '')}")
        if status >= 400:
            code = str(body.get("code", f"HTTP_{status}"))
            if code in _RETRY_LATER:
                raise PlatformUnavailable(code)
            raise PlatformRefused(code, str(body.get("message", "")))
        return status, body

    async def create(self, order: Order, *, notify_url: str, openid: str | None, client_ip: str) -> dict[str, Any]:
        from wechatpayv3.async_ import WeChatPayType  # loaded with the client (__init__)

        channel = PaymentChannel(order.channel)
        common: dict[str, Any] = {
            "description": order.name[:127],
            "out_trade_no": order.order_no,
            "amount": {"total": order.amount_fen, "currency": "CNY"},
            "time_expire": china_time(order.expires_at),
            "notify_url": notify_url,
        }
        if channel is PaymentChannel.WECHAT_NATIVE:
            _, body = await self._call(self._pay.pay(**common, pay_type=WeChatPayType.NATIVE))
            return {"code_url": body["code_url"]}
        if not openid:
            raise PlatformRefused("OPENID_REQUIRED", "the JSAPI channel needs a WeChat login")
        _, body = await self._call(self._pay.pay(**common, payer={"openid": openid}, pay_type=WeChatPayType.MINIPROG))
        return self.request_payment_params(str(body["prepay_id"]))

    def request_payment_params(self, prepay_id: str) -> dict[str, str]:
        """What the mini program passes to ``wx.requestPayment`` (signType is not signed)."""
        timestamp = str(int(self._clock()))
        nonce = secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        return {
            "appId": self.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": self._pay.sign([self.appid, timestamp, nonce, package]),
        }

    async def query(self, order_no: str) -> Trade:
        try:
            _, body = await self._call(self._pay.query(out_trade_no=order_no))
        except PlatformRefused as refused:
            if refused.code == "ORDER_NOT_EXIST":
                return Trade(TradeState.PENDING)
            raise
        return self._trade(body)

    def _trade(self, body: Mapping[str, Any]) -> Trade:
        state = _TRADE_STATES.get(str(body.get("trade_state", "")), TradeState.PENDING)
        amount = body.get("amount") or {}
        # The order total (a coupon may lower what the payer paid; the order is what we sold).
        paid = int(amount.get("total", 0) or 0) if state in (TradeState.PAID, TradeState.REFUNDED) else 0
        return Trade(
            state=state,
            transaction_id=body.get("transaction_id"),
            paid_fen=paid,
            paid_at=_parse_time(body.get("success_time")),
        )

    async def close(self, order_no: str) -> None:
        try:
            await self._call(self._pay.close(out_trade_no=order_no))
        except PlatformRefused as refused:
            if refused.code not in ("ORDER_CLOSED", "ORDER_NOT_EXIST"):
                raise

    async def refund(
        self, order: Order, *, refund_no: str, amount_fen: int, reason: str, notify_url: str
    ) -> RefundResult:
        _, body = await self._call(
            self._pay.refund(
                out_refund_no=refund_no,
                out_trade_no=order.order_no,
                amount={"refund": amount_fen, "total": order.amount_fen, "currency": "CNY"},
                reason=reason[:80],
                notify_url=notify_url,
            )
        )
        return self._refund(body)

    def _refund(self, body: Mapping[str, Any]) -> RefundResult:
        status = str(body.get("status") or body.get("refund_status") or "")
        return RefundResult(_REFUND_STATES.get(status, RefundState.PROCESSING), body.get("refund_id"))

    async def query_refund(self, order: Order, refund_no: str) -> RefundResult:
        _, body = await self._call(self._pay.query_refund(out_refund_no=refund_no))
        return self._refund(body)

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            stamp = int(lowered.get("wechatpay-timestamp", ""))
        except ValueError as exc:
            raise SignatureInvalid("no timestamp") from exc
        if abs(self._clock() - stamp) > NOTIFY_SKEW_SECONDS:
            raise SignatureInvalid("timestamp outside the 5 minute window")
        # The SDK looks the headers up by their canonical spelling (or WSGI's).
        canonical = {
            "Wechatpay-Signature": lowered.get("wechatpay-signature", ""),
            "Wechatpay-Timestamp": lowered.get("wechatpay-timestamp", ""),
            "Wechatpay-Nonce": lowered.get("wechatpay-nonce", ""),
            "Wechatpay-Serial": lowered.get("wechatpay-serial", ""),
            "Wechatpay-Signature-Type": lowered.get("wechatpay-signature-type", ""),
        }
        try:
            decoded = self._pay.callback(canonical, body.decode("utf-8"))
        except Exception as exc:  # malformed JSON, unsupported algorithm
            raise SignatureInvalid(type(exc).__name__) from exc
        if not decoded or not isinstance(decoded.get("resource"), dict):
            raise SignatureInvalid("signature or ciphertext does not verify")
        resource: dict[str, Any] = decoded["resource"]
        event_type = str(decoded.get("event_type", ""))
        event_id = str(decoded.get("id", ""))
        merchant_ok = str(resource.get("mchid", "")) == self.mchid
        if event_type.startswith("TRANSACTION."):
            merchant_ok = merchant_ok and str(resource.get("appid", "")) == self.appid
            return Notification(
                event_id=event_id,
                event_type=event_type,
                kind=NotificationKind.PAYMENT,
                order_no=resource.get("out_trade_no"),
                merchant_ok=merchant_ok,
                trade=self._trade(resource),
                record=_record(resource, ("out_trade_no", "transaction_id", "trade_state", "success_time", "amount")),
            )
        if event_type.startswith("REFUND."):
            amount = resource.get("amount") or {}
            return Notification(
                event_id=event_id,
                event_type=event_type,
                kind=NotificationKind.REFUND,
                order_no=resource.get("out_trade_no"),
                merchant_ok=merchant_ok,
                refund_no=resource.get("out_refund_no"),
                refund=self._refund(resource),
                refund_fen=int(amount.get("refund", 0) or 0),
                record=_record(resource, ("out_trade_no", "out_refund_no", "refund_id", "refund_status", "amount")),
            )
        return Notification(event_id, event_type, NotificationKind.OTHER, None, merchant_ok)


def _record(resource: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The fields worth keeping: no payer identifiers (personal data) in the inbox."""
    return {k: resource[k] for k in keys if k in resource}
