"""One ErrorCode enum, one AppError hierarchy.

Each code carries its HTTP status and a message in zh-CN and en. Services raise ``AppError``
(never ``HTTPException``): the same code runs in workers, where there is no HTTP.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(Enum):
    # value: (HTTP status, zh-CN message, en message)
    VALIDATION_FAILED = (422, "请求参数校验失败", "Request validation failed")
    MALFORMED_REQUEST = (400, "请求体不是合法的 JSON", "The request body is not valid JSON")
    PAYLOAD_TOO_LARGE = (413, "请求体过大", "The request body is too large")
    AUTH_REQUIRED = (401, "请先登录", "Authentication required")
    AUTH_TOKEN_INVALID = (401, "登录凭证无效", "The token is invalid")
    AUTH_TOKEN_EXPIRED = (401, "登录已过期，请重新登录", "The token has expired")
    AUTH_SESSION_REVOKED = (401, "会话已失效，请重新登录", "The session has been revoked")
    AUTH_REFRESH_REUSED = (
        401,
        "刷新凭证被重复使用，所有相关会话已失效",
        "The refresh token was reused; the session family has been revoked",
    )
    AUTH_SESSION_EXPIRED = (401, "登录会话已到期，请重新登录", "The login session has expired; log in again")
    REAUTHENTICATION_REQUIRED = (
        403,
        "请先验证身份：当前手机号的验证码或登录密码",
        "Confirm it is you: a code sent to your current phone, or your password",
    )
    AUTH_INVALID_CREDENTIALS = (401, "账号或密码错误", "Invalid phone number or password")
    AUTH_CODE_INVALID = (400, "验证码错误或已失效", "The verification code is wrong or has expired")
    # 403, not 429: waiting does not help and the client may retry at once, with a ticket; not
    # 401, which tells clients to log in again.
    CAPTCHA_REQUIRED = (403, "请先完成人机验证", "Complete the captcha first")
    CAPTCHA_INVALID = (
        400,
        "人机验证未通过或已失效，请重新验证",
        "The captcha is invalid or has expired; solve a new one",
    )
    ACCOUNT_DISABLED = (403, "账号已被停用", "The account is disabled")
    PERMISSION_DENIED = (403, "没有权限执行此操作", "Permission denied")
    NOT_FOUND = (404, "资源不存在", "Not found")
    METHOD_NOT_ALLOWED = (405, "不支持的请求方法", "Method not allowed")
    CONFLICT = (409, "资源冲突", "Conflict")
    PHONE_ALREADY_BOUND = (
        409,
        "该手机号已绑定其他账号，请使用短信验证码登录该账号",
        "This phone number belongs to another account; log in to it with an SMS code",
    )
    WECHAT_ALREADY_BOUND = (
        409,
        "该微信已是其他账号，或本账号已绑定另一个微信",
        "This WeChat user has another account here, or this account has another WeChat user",
    )
    REFERRER_ALREADY_BOUND = (409, "邀请人已绑定，不能修改", "The referrer is already bound")
    INVITE_CODE_INVALID = (400, "邀请码无效", "The invite code is not valid")
    IDEMPOTENCY_CONFLICT = (409, "幂等键冲突", "Idempotency key conflict")
    SIGNED_URL_EXPIRED = (403, "链接已过期，请重新获取", "The signed URL has expired; request a new one")
    UPLOAD_INVALID = (422, "上传的文件不是有效的图片", "The uploaded file is not an acceptable image")
    QUOTA_INSUFFICIENT = (402, "额度不足", "Insufficient quota")
    CONTENT_BLOCKED = (
        422,
        "内容未通过安全审核，请修改后重试",
        "The content did not pass moderation; change it and retry",
    )
    FEATURE_UNAVAILABLE = (403, "该功能不可用", "Feature unavailable")
    RATE_LIMITED = (429, "请求过于频繁，请稍后再试", "Too many requests; try again later")
    CONNECTION_LIMIT_REACHED = (
        429,
        "同时在线的连接过多，请关闭其他页面后重试",
        "Too many live connections for this account; close another and retry",
    )
    PAYMENT_SIGNATURE_INVALID = (400, "支付通知签名无效", "Invalid payment signature")
    PAYMENT_CHANNEL_UNAVAILABLE = (409, "该支付方式暂不可用", "This payment channel is not available")
    PAYMENT_PLATFORM_ERROR = (502, "支付平台拒绝了请求", "The payment platform refused the request")
    REFUND_NOT_ALLOWED = (
        409,
        "该订单当前不能退款或退款金额超出可退金额",
        "This order cannot be refunded by that amount",
    )
    REFUND_EXCEEDS_UNSPENT = (
        409,
        "用户已使用了该订单的额度，无法全额退款",
        "The user has already spent the quota this refund would take back",
    )
    CALLBACK_SIGNATURE_INVALID = (403, "回调签名无效", "Invalid callback signature")
    DEPENDENCY_UNAVAILABLE = (503, "依赖服务暂不可用，请稍后再试", "A dependency is unavailable")
    INTERNAL_ERROR = (500, "服务器内部错误", "Internal server error")
    # Staff sign-in with a time-based one-time code (authenticator app).
    TOTP_REQUIRED = (401, "请输入身份验证器中的动态验证码", "Enter the code from your authenticator app")
    TOTP_INVALID = (401, "动态验证码错误或已使用", "The authenticator code is wrong or was already used")
    TOTP_ENROLMENT_REQUIRED = (
        403,
        "管理员须先启用身份验证器（TOTP），并使用动态验证码重新登录",
        "Admins must enable an authenticator (TOTP) and log in again with its code",
    )
    PLAN_NOT_ON_SALE = (
        409,
        "该套餐当前不可购买，或不支持该支付方式",
        "This plan is not on sale now, or not on this payment channel",
    )

    @property
    def status(self) -> int:
        return int(self.value[0])

    def message(self, lang: str = "zh") -> str:
        return str(self.value[2] if lang == "en" else self.value[1])


class AppError(Exception):
    """A failure with a stable code. ``data`` is safe to show to the client."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        code: ErrorCode | None = None,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.data = data
        self.headers = headers or {}
        # detail is for logs only; it never reaches a client.
        self.detail = detail
        super().__init__(detail or self.code.name)


class ValidationFailed(AppError):
    code = ErrorCode.VALIDATION_FAILED

    def __init__(self, field: str, message: str) -> None:
        super().__init__(data=[{"field": field, "message": message}], detail=f"{field}: {message}")


class RateLimited(AppError):
    code = ErrorCode.RATE_LIMITED

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(data={"retry_after": retry_after}, headers={"Retry-After": str(retry_after)}, detail=detail)


class NotFound(AppError):
    code = ErrorCode.NOT_FOUND


class PermissionDenied(AppError):
    code = ErrorCode.PERMISSION_DENIED


class DependencyUnavailable(AppError):
    code = ErrorCode.DEPENDENCY_UNAVAILABLE
