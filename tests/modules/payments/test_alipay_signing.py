"""Our Alipay client's RSA2 signing and verification, checked against python-alipay-sdk as the
oracle: the same string to sign, the same signature, the same answers accepted and refused."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus, urlencode

import pytest
from alipay import AliPay
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from wardrobe.modules.payments.alipay import AlipayGateway, fen_to_yuan, signing_string, yuan_to_fen
from wardrobe.modules.payments.gateway import NotificationKind, PlatformUnavailable, SignatureInvalid


def _pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


APP_PRIVATE, APP_PUBLIC = _pair()
ALIPAY_PRIVATE, ALIPAY_PUBLIC = _pair()


def _ours() -> AlipayGateway:
    return AlipayGateway(
        app_id="2021000000000001",
        private_key=APP_PRIVATE,
        alipay_public_key=ALIPAY_PUBLIC,
        seller_id="2088000000000001",
        gateway="http://127.0.0.1:9/gateway.do",
    )


def _sdk_as_us() -> AliPay:
    """The SDK holding our app key: what it signs is what Alipay expects from us."""
    return AliPay(appid="2021000000000001", app_private_key_string=APP_PRIVATE, alipay_public_key_string=ALIPAY_PUBLIC)


def _sdk_as_alipay() -> AliPay:
    """The SDK holding Alipay's key: it signs what Alipay sends us."""
    return AliPay(appid="2021000000000001", app_private_key_string=ALIPAY_PRIVATE, alipay_public_key_string=APP_PUBLIC)


def test_request_signatures_match_the_sdk() -> None:
    params = _ours().signed_params(
        "alipay.trade.precreate",
        {"out_trade_no": "WD2026112200000012345678", "total_amount": "9.90", "subject": "100 次加油包"},
        "https://api.example.com/api/v1/payments/alipay/notify",
    )
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    sdk_signed = dict(pair.split("=", 1) for pair in _sdk_as_us().sign_data(dict(unsigned)).split("&"))
    assert unquote_plus(sdk_signed["sign"]) == params["sign"]
    assert "sign_type=RSA2" in signing_string(params)  # requests sign sign_type too


def _notification(**override: str) -> dict[str, str]:
    fields = {
        "notify_type": "trade_status_sync",
        "notify_id": "2026112200222000000000000001",
        "notify_time": "2026-11-22 18:00:00",
        "app_id": "2021000000000001",
        "seller_id": "2088000000000001",
        "trade_no": "2026112222001400000000000001",
        "out_trade_no": "WD2026112200000012345678",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "9.90",
        "receipt_amount": "9.90",
        "gmt_payment": "2026-11-22 17:59:58",
        "subject": "100 次加油包",
        **override,
    }
    # Alipay signs the sorted fields without sign and sign_type.
    fields["sign"] = _sdk_as_alipay()._sign(signing_string(fields, without=("sign", "sign_type")))
    fields["sign_type"] = "RSA2"
    return fields


def _form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def test_a_signed_notification_is_accepted_and_decoded() -> None:
    notification = _ours().verify_notification({}, _form(_notification()))
    assert notification.kind is NotificationKind.PAYMENT
    assert notification.order_no == "WD2026112200000012345678"
    assert notification.merchant_ok
    assert notification.trade is not None
    assert notification.trade.paid_fen == 990
    assert notification.event_id == "2026112200222000000000000001"


@pytest.mark.parametrize("field", ["total_amount", "out_trade_no", "trade_status", "app_id"])
def test_a_tampered_notification_is_refused(field: str) -> None:
    fields = _notification()
    fields[field] = fields[field] + "0"
    with pytest.raises(SignatureInvalid):
        _ours().verify_notification({}, _form(fields))


def test_another_merchant_is_flagged() -> None:
    notification = _ours().verify_notification({}, _form(_notification(seller_id="2088999999999999")))
    assert not notification.merchant_ok


def _response(method: str, body: dict[str, Any], sign_with: AliPay) -> str:
    r = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    name = method.replace(".", "_") + "_response"
    return f'{{"{name}":{r},"sign":"{sign_with._sign(r)}"}}'


def test_answers_are_verified_over_their_exact_text() -> None:
    body = {"code": "10000", "msg": "Success", "out_trade_no": "WD1", "qr_code": "https://qr.alipay.com/x"}
    text = _response("alipay.trade.precreate", body, _sdk_as_alipay())
    assert _ours()._verified_response("alipay.trade.precreate", text) == body
    # The SDK, checking the same answer with the same key, agrees.
    oracle = AliPay(appid="x", app_private_key_string=APP_PRIVATE, alipay_public_key_string=ALIPAY_PUBLIC)
    assert oracle._verify_and_return_sync_response(text, "alipay_trade_precreate_response") == body
    forged = _response("alipay.trade.precreate", {**body, "qr_code": "https://evil"}, _sdk_as_us())
    with pytest.raises(PlatformUnavailable):
        _ours()._verified_response("alipay.trade.precreate", forged)
    with pytest.raises(PlatformUnavailable):
        _ours()._verified_response("alipay.trade.precreate", text.replace("Success", "Succesz"))


@given(st.integers(min_value=0, max_value=10**9))
def test_fen_and_yuan_round_trip(fen: int) -> None:
    assert yuan_to_fen(fen_to_yuan(fen)) == fen


def test_amounts_with_more_than_two_decimals_are_refused() -> None:
    with pytest.raises(ValueError, match="decimals"):
        yuan_to_fen("9.999")
    assert yuan_to_fen("9.9") == 990
