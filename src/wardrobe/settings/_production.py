"""What production refuses to start with (``problems``) and what it only warns about."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wardrobe.settings._values import (
    DEFAULT_CALLBACK_SECRET,
    DEFAULT_CODE_PEPPER,
    DEFAULT_JWT_SECRET,
    DEFAULT_STORAGE_SIGNING_KEY,
    DEFAULT_WEBHOOK_SECRET_KEY,
    SmsBackend,
)

if TYPE_CHECKING:
    from wardrobe.settings import Settings


def problems(self: Settings) -> list[str]:
    """Insecure defaults that production must not run with."""
    problems: list[str] = []
    secret = self.jwt_secret.get_secret_value()
    if secret == DEFAULT_JWT_SECRET or len(secret) < 32:
        problems.append("WARDROBE_JWT_SECRET is the default or shorter than 32 characters")
    if any(old.get_secret_value() == DEFAULT_JWT_SECRET for old in self.jwt_previous_secrets):
        problems.append("WARDROBE_JWT_PREVIOUS_SECRETS holds the development default")
    if self.sms_code_pepper.get_secret_value() == DEFAULT_CODE_PEPPER:
        problems.append("WARDROBE_SMS_CODE_PEPPER is the default")
    storage_key = self.storage_signing_key.get_secret_value()
    if self.storage_backend == "local" and (storage_key == DEFAULT_STORAGE_SIGNING_KEY or len(storage_key) < 32):
        problems.append("WARDROBE_STORAGE_SIGNING_KEY is the default or shorter than 32 characters")
    if self.storage_backend == "s3":
        problems.extend(
            f"WARDROBE_{name.upper()} must be set when WARDROBE_STORAGE_BACKEND=s3"
            for name, value in (
                ("storage_s3_bucket", self.storage_s3_bucket),
                ("storage_s3_region", self.storage_s3_region),
                ("storage_s3_access_key_id", self.storage_s3_access_key_id),
                ("storage_s3_secret_access_key", self.storage_s3_secret_access_key.get_secret_value()),
            )
            if not value
        )
    if self.sms_backend is SmsBackend.CONSOLE:
        problems.append("WARDROBE_SMS_BACKEND=console is for development only")
    elif not self.tencent_sms_phone_changed_template_id:
        # Without it a stolen session could move the account's phone with no word to its owner.
        problems.append("WARDROBE_TENCENT_SMS_PHONE_CHANGED_TEMPLATE_ID must be set (notice to the old number)")
    if self.sms_debug_codes:
        problems.append("WARDROBE_SMS_DEBUG_CODES must be false")
    if self.debug:
        problems.append("WARDROBE_DEBUG must be false")
    if self.seed_demo_data:
        problems.append("WARDROBE_SEED_DEMO_DATA must be false")
    if (self.wechatpay_mchid or self.alipay_app_id) and not self.payment_notify_base_url.startswith("https://"):
        problems.append("WARDROBE_PAYMENT_NOTIFY_BASE_URL must be an https:// URL when a payment platform is set")
    if self.scf_enabled and len(self.scf_callback_key.get_secret_value()) < 32:
        problems.append("WARDROBE_SCF_CALLBACK_KEY must be 32+ characters when SCF is enabled")
    if self.scf_enabled and not self.vendor_callback_base_url.startswith("https://"):
        problems.append("WARDROBE_VENDOR_CALLBACK_BASE_URL must be an https:// URL when SCF is enabled")
    callback_secret = self.vendor_callback_secret.get_secret_value()
    if callback_secret == DEFAULT_CALLBACK_SECRET or len(callback_secret) < 32:
        problems.append("WARDROBE_VENDOR_CALLBACK_SECRET is the default or shorter than 32 characters")
    if self.storage_sts_enabled and not (self.tencent_secret_id and self.tencent_secret_key.get_secret_value()):
        problems.append("WARDROBE_TENCENT_SECRET_ID and _SECRET_KEY must be set when WARDROBE_STORAGE_STS_ENABLED=true")
    if self.kms_backend == "tencent" and not (self.kms_key_id and self.tencent_secret_id):
        problems.append(
            "WARDROBE_KMS_KEY_ID and WARDROBE_TENCENT_SECRET_ID must be set when WARDROBE_KMS_BACKEND=tencent"
        )
    webhook_key = self.webhook_secret_key.get_secret_value()
    if webhook_key == DEFAULT_WEBHOOK_SECRET_KEY or len(webhook_key) < 32:
        problems.append("WARDROBE_WEBHOOK_SECRET_KEY is the default or shorter than 32 characters")
    if self.payment_sandbox:
        problems.append("WARDROBE_PAYMENT_SANDBOX must be off: anyone could pay with it")
    if len(self.metrics_token.get_secret_value()) < 32:
        # Metrics name routes, vendors, queue depths and failure rates: reconnaissance for an attacker.
        problems.append("WARDROBE_METRICS_TOKEN must be set (32+ characters) for Prometheus to scrape /metrics")
    if self.wechat_web_appid and not self.wechat_web_redirect_uri.startswith("https://"):
        problems.append(
            "WARDROBE_WECHAT_WEB_REDIRECT_URI must be an https:// URL when WARDROBE_WECHAT_WEB_APPID is set"
        )
    problems.extend(
        f"WARDROBE_{name}_SECRET must be set when WARDROBE_{name}_APPID is set"
        for name, appid, secret in (
            ("WECHAT", self.wechat_appid, self.wechat_secret),
            ("WECHAT_WEB", self.wechat_web_appid, self.wechat_web_secret),
            ("WECHAT_MOBILE", self.wechat_mobile_appid, self.wechat_mobile_secret),
        )
        if appid and not secret.get_secret_value()
    )
    if self.wechatpay_mchid and len(self.wechatpay_apiv3_key.get_secret_value().encode()) != 32:
        problems.append("WARDROBE_WECHATPAY_APIV3_KEY must be 32 bytes")
    return problems


def warnings(self: Settings) -> list[str]:
    """Choices production may run with but should not, logged when the API starts. Captcha is
    not required: the per-phone and per-address SMS caps still bound what one phone or one
    address costs, but not what a botnet pumping many numbers costs."""
    warnings: list[str] = []
    if not self.captcha_enabled:
        warnings.append("WARDROBE_CAPTCHA_ENABLED=false: nothing but the SMS caps stands against SMS pumping")
    if not self.admin_totp_enforced:
        warnings.append("WARDROBE_ADMIN_TOTP_REQUIRED=false: an admin's password alone opens every admin route")
    return warnings
