"""Alipay open platform: our own async client (httpx + ``cryptography``).

Why our own: python-alipay-sdk is synchronous (urlopen) and the official SDK is a 33 MB
synchronous wheel; the protocol itself is small. Tests check our signatures against
python-alipay-sdk as the oracle.

- **Requests**: every non-empty parameter but ``sign`` (``sign_type`` included), sorted by key,
  joined raw as ``k=v&…``, signed RSA-SHA256 (PKCS#1 v1.5), base64.
- **Answers** ``{"<method>_response": {…}, "sign": "…"}``: the signature covers the *exact text*
  of the ``*_response`` value, so it is cut out of the raw body (``raw_decode`` finds its end)
  rather than re-serialised. An answer without a valid signature is never trusted.
- **Notifications** (form posts): drop ``sign`` and ``sign_type``, sort, join, verify with the
  Alipay public key; then ``app_id`` and ``seller_id`` must be ours.
- Money travels as yuan strings (``"12.30"``); we keep integer fen and convert exactly.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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
_PAID = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
_TRADE_STATES = {"WAIT_BUYER_PAY": TradeState.PENDING, "TRADE_CLOSED": TradeState.CLOSED}
_PRODUCT_CODES = {
    PaymentChannel.ALIPAY_PAGE: ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    PaymentChannel.ALIPAY_WAP: ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),
}


def fen_to_yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def yuan_to_fen(text: object) -> int:
    try:
        value = Decimal(str(text)) * 100
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {text!r}") from exc
    if value != value.to_integral_value():
        raise ValueError(f"more than two decimals: {text!r}")
    return int(value)


def signing_string(params: Mapping[str, Any], *, without: tuple[str, ...] = ("sign",)) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in without and params[k] not in (None, ""))


def _load_private(pem_or_base64: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(_pem(pem_or_base64, "PRIVATE KEY"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the Alipay app key must be an RSA key")
    return key


def _load_public(pem_or_base64: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(_pem(pem_or_base64, "PUBLIC KEY"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the Alipay public key must be an RSA key")
    return key


def _pem(text: str, label: str) -> bytes:
    """Alipay's console hands out bare base64 keys; accept those as well as PEM."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


class AlipayGateway:
    provider = "alipay"

    def __init__(
        self,
        *,
        app_id: str,
        private_key: str,
        alipay_public_key: str,
        seller_id: str,
        gateway: str,
        return_url: str = "",
        timeout: float = 10.0,
        clock: Any = time.time,
    ) -> None:
        self.app_id = app_id
        self.seller_id = seller_id
        self.gateway = gateway
        self.return_url = return_url
        self._private = _load_private(private_key)
        self._public = _load_public(alipay_public_key)
        self._timeout = timeout
        self._clock = clock
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 5.0)))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- signing -----------------------------------------------------------------------------

    def sign(self, params: Mapping[str, Any]) -> str:
        signature = self._private.sign(signing_string(params).encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def _verify(self, message: str, signature: str) -> bool:
        try:
            self._public.verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    def signed_params(self, method: str, biz: Mapping[str, Any], notify_url: str | None = None) -> dict[str, str]:
        params = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": datetime.fromtimestamp(self._clock(), CHINA).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        if notify_url:
            params["notify_url"] = notify_url
        if method in ("alipay.trade.page.pay", "alipay.trade.wap.pay") and self.return_url:
            params["return_url"] = self.return_url
        params["sign"] = self.sign(params)
        return params

    # -- calls -------------------------------------------------------------------------------

    async def _call(self, method: str, biz: Mapping[str, Any], notify_url: str | None = None) -> dict[str, Any]:
        await self.start()
        assert self._client is not None  # noqa: S101 - start() just made it
        params = self.signed_params(method, biz, notify_url)
        try:
            response = await self._client.post(
                self.gateway,
                content=urlencode(params).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(f"alipay unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise PlatformUnavailable(f"alipay HTTP {response.status_code}")
        body = self._verified_response(method, response.text)
        code = str(body.get("code", ""))
        if code == "10000":
            return body
        if code in ("20000", "") or body.get("sub_code") in ("ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR"):
            raise PlatformUnavailable(f"alipay {code} {body.get('sub_code', '')}")
        raise PlatformRefused(str(body.get("sub_code") or code), str(body.get("sub_msg") or body.get("msg") or ""))

    def _verified_response(self, method: str, text: str) -> dict[str, Any]:
        key = '"' + method.replace(".", "_") + '_response"'
        start = text.find(key)
        if start < 0:
            raise PlatformUnavailable("alipay answer without its response object")
        colon = text.index(":", start + len(key))
        value_start = colon + 1
        while value_start < len(text) and text[value_start] in " \t\r\n":
            value_start += 1
        try:
            body, end = json.JSONDecoder().raw_decode(text, value_start)
            signature = json.loads(text).get("sign")
        except ValueError as exc:
            raise PlatformUnavailable("alipay answer is not JSON") from exc
        if not isinstance(body, dict) or not signature or not self._verify(text[value_start:end], signature):
            raise PlatformUnavailable("alipay answer signature does not verify")
        return body

    async def create(self, order: Order, *, notify_url: str, openid: str | None, client_ip: str) -> dict[str, Any]:
        channel = PaymentChannel(order.channel)
        biz: dict[str, Any] = {
            "out_trade_no": order.order_no,
            "total_amount": fen_to_yuan(order.amount_fen),
            "subject": order.name[:256],
            "time_expire": order.expires_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
        }
        if channel is PaymentChannel.ALIPAY_QR:
            body = await self._call("alipay.trade.precreate", biz, notify_url)
            return {"qr_code": body["qr_code"]}
        method, product = _PRODUCT_CODES[channel]
        # Page and wap payments make no server call now: the client opens this signed URL.
        params = self.signed_params(method, {**biz, "product_code": product}, notify_url)
        return {"pay_url": f"{self.gateway}?{urlencode(params)}"}

    async def query(self, order_no: str) -> Trade:
        try:
            body = await self._call("alipay.trade.query", {"out_trade_no": order_no})
        except PlatformRefused as refused:
            if refused.code == "ACQ.TRADE_NOT_EXIST":
                return Trade(TradeState.PENDING)
            raise
        return self._trade(body)

    @staticmethod
    def _trade(body: Mapping[str, Any]) -> Trade:
        status = str(body.get("trade_status", ""))
        state = TradeState.PAID if status in _PAID else _TRADE_STATES.get(status, TradeState.PENDING)
        paid_at = None
        if body.get("gmt_payment") or body.get("send_pay_date"):
            stamp = str(body.get("gmt_payment") or body.get("send_pay_date"))
            try:
                paid_at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA).astimezone(UTC)
            except ValueError:
                paid_at = None
        paid = yuan_to_fen(body.get("total_amount", "0")) if state is TradeState.PAID else 0
        return Trade(state, body.get("trade_no"), paid, paid_at)

    async def close(self, order_no: str) -> None:
        try:
            await self._call("alipay.trade.close", {"out_trade_no": order_no})
        except PlatformRefused as refused:
            # Never scanned: nothing to close at Alipay; already closed: done.
            if refused.code not in ("ACQ.TRADE_NOT_EXIST", "ACQ.TRADE_HAS_CLOSE"):
                raise

    async def refund(
        self, order: Order, *, refund_no: str, amount_fen: int, reason: str, notify_url: str
    ) -> RefundResult:
        body = await self._call(
            "alipay.trade.refund",
            {
                "out_trade_no": order.order_no,
                "refund_amount": fen_to_yuan(amount_fen),
                "out_request_no": refund_no,
                "refund_reason": reason[:256],
            },
        )
        if body.get("fund_change") == "Y":
            return RefundResult(RefundState.SUCCEEDED, body.get("trade_no"))
        # "N" on a repeat of an earlier refund: ask what became of it.
        return await self.query_refund(order, refund_no)

    async def query_refund(self, order: Order, refund_no: str) -> RefundResult:
        body = await self._call(
            "alipay.trade.fastpay.refund.query", {"out_trade_no": order.order_no, "out_request_no": refund_no}
        )
        if body.get("refund_status") == "REFUND_SUCCESS":
            return RefundResult(RefundState.SUCCEEDED, body.get("trade_no"))
        return RefundResult(RefundState.PROCESSING, body.get("trade_no"))

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        from urllib.parse import parse_qsl

        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError as exc:
            raise SignatureInvalid("not utf-8") from exc
        signature = fields.get("sign", "")
        if not signature or not self._verify(signing_string(fields, without=("sign", "sign_type")), signature):
            raise SignatureInvalid("alipay notification signature does not verify")
        merchant_ok = fields.get("app_id") == self.app_id and (
            not self.seller_id or fields.get("seller_id") == self.seller_id
        )
        record: dict[str, Any] = {
            k: fields[k]
            for k in (
                "out_trade_no",
                "trade_no",
                "trade_status",
                "total_amount",
                "refund_fee",
                "out_biz_no",
                "gmt_payment",
            )
            if k in fields
        }
        event_id = fields.get("notify_id", "")
        if fields.get("refund_fee") and fields.get("out_biz_no"):
            return Notification(
                event_id=event_id,
                event_type=f"refund:{fields.get('trade_status', '')}",
                kind=NotificationKind.REFUND,
                order_no=fields.get("out_trade_no"),
                merchant_ok=merchant_ok,
                refund_no=fields["out_biz_no"],
                refund=RefundResult(RefundState.SUCCEEDED, fields.get("trade_no")),
                refund_fen=yuan_to_fen(fields["refund_fee"]),
                record=record,
            )
        return Notification(
            event_id=event_id,
            event_type=fields.get("trade_status", ""),
            kind=NotificationKind.PAYMENT,
            order_no=fields.get("out_trade_no"),
            merchant_ok=merchant_ok,
            trade=self._trade(fields),
            record=record,
        )
