"""What the payment platforms' notifications carry and get back, for the OpenAPI document.

These routes answer each platform in its own format (not the envelope): WeChat Pay reads the
status and, on a failure, ``{"code": "FAIL", "message": "失败"}``; Alipay reads the text
``success`` or ``fail``. The layers in front of every route (rate limits, the body cap, a database
outage) still answer in the envelope; core/contract.py adds those beside these."""

from __future__ import annotations

from typing import Any

_WECHAT_FAIL = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"const": "FAIL"}, "message": {"type": "string"}},
        },
        "example": {"code": "FAIL", "message": "失败"},
    }
}
WECHAT_SIGNATURE_HEADERS = ("Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial")


def _fail_text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"const": "fail"}}}}


WECHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "Accepted (recorded once; a duplicate is accepted again)"},
    400: {
        "description": "A signature header is missing; or verified, but not for this merchant or with the wrong amount",
        "content": _WECHAT_FAIL,
    },
    401: {"description": "The signature or the ciphertext does not verify", "content": _WECHAT_FAIL},
    404: {"description": "WeChat Pay is not configured here, or the order is unknown", "content": _WECHAT_FAIL},
    500: {"description": "Not recorded; WeChat Pay retries on its schedule", "content": _WECHAT_FAIL},
}

WECHAT_BODY = (
    "The body is WeChat Pay's API v3 notification (JSON, its `resource` encrypted with the merchant's API v3 "
    "key), signed over the timestamp, nonce and body."
)
WECHAT_REQUEST: dict[str, Any] = {
    "parameters": [
        {
            "name": name,
            "in": "header",
            "required": True,
            "schema": {"type": "string", "maxLength": 1024},
            "description": "Set by WeChat Pay; the notification is signed over its timestamp, nonce and body",
        }
        for name in WECHAT_SIGNATURE_HEADERS
    ],
}

ALIPAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`success`: recorded once (a duplicate is accepted again)",
        "content": {"text/plain": {"schema": {"const": "success"}}},
    },
    400: _fail_text("The signature does not verify, or not for this app or seller, or the wrong amount"),
    404: _fail_text("Alipay is not configured here, or the order is unknown"),
    500: _fail_text("Not recorded; Alipay retries on its schedule"),
}

SANDBOX_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "Accepted (recorded once; a duplicate is accepted again)"},
    400: {"description": "Unsigned; or verified, but with the wrong amount"},
    401: {"description": "The signature does not verify, or its timestamp is more than five minutes off"},
    404: {"description": "The sandbox is off here (outside development), or the order is unknown"},
    500: {"description": "Not recorded"},
}
SANDBOX_REQUEST: dict[str, Any] = {
    "parameters": [
        {
            "name": name,
            "in": "header",
            "required": True,
            "schema": {"type": "string", "maxLength": 128},
            "description": "Standard Webhooks: the signature covers `id.timestamp.body`",
        }
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    ],
}
