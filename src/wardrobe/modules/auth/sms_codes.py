"""SMS verification codes: hashed, 5-minute TTL, 5 tries, cooldown and daily caps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError, DependencyUnavailable, ErrorCode, RateLimited
from wardrobe.core.logging import get_logger, mask_phone
from wardrobe.core.metrics import SMS_SENT
from wardrobe.core.ratelimit import Windows, per_day, per_hour, per_seconds
from wardrobe.core.security import constant_time_equals, hash_code, new_numeric_code
from wardrobe.models import SmsCode
from wardrobe.models.base import utcnow
from wardrobe.modules.auth import repository, sms_risk
from wardrobe.modules.auth.parts import AccountParts
from wardrobe.modules.auth.phone import to_e164
from wardrobe.modules.auth.sms_risk import CaptchaTicket
from wardrobe.modules.auth.sms_senders import SmsRateLimitedError, SmsSendError
from wardrobe.settings import Settings

log = get_logger("wardrobe.auth.sms")


class CodePurpose(StrEnum):
    LOGIN = "login"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a secret
    BIND_PHONE = "bind_phone"
    # Sent to the account's current phone, to prove it is the owner's: never to a number a client names.
    CHANGE_PHONE = "change_phone"
    DELETE_ACCOUNT = "delete_account"
    CREATE_API_KEY = "create_api_key"
    LINK_WECHAT = "link_wechat"


# Purposes whose code goes to the logged-in account's own phone.
ACCOUNT_PURPOSES = frozenset(
    {CodePurpose.CHANGE_PHONE, CodePurpose.DELETE_ACCOUNT, CodePurpose.CREATE_API_KEY, CodePurpose.LINK_WECHAT}
)


@dataclass(frozen=True, slots=True)
class SentCode:
    cooldown_seconds: int
    debug_code: str | None


def _send_windows(s: Settings, phone: str, client_ip: str) -> Windows:
    return [
        ([per_seconds(1, s.sms_cooldown_seconds)], ("sms-cooldown", phone)),
        ([per_day(s.sms_daily_cap_per_phone)], ("sms-phone-day", phone)),
        ([per_hour(s.sms_hourly_cap_per_ip), per_day(s.sms_daily_cap_per_ip)], ("sms-ip", client_ip)),
    ]


async def send_code(
    session: AsyncSession,
    parts: AccountParts,
    *,
    phone: str,
    purpose: CodePurpose,
    client_ip: str,
    device_id: str | None = None,
    captcha: CaptchaTicket | None = None,
) -> SentCode:
    """Limit, store the hash, send. The answer is the same whether or not the phone is registered."""
    s = parts.settings
    windows = _send_windows(s, phone, client_ip)
    if parts.captcha is not None:
        await sms_risk.pass_gate(parts, windows, phone=phone, client_ip=client_ip, device_id=device_id, captcha=captcha)
    # All or none: a request refused by any window (the address's cap, say) takes no unit from
    # the others, so one address cannot use up a phone's cooldown and daily sends without an SMS
    # going out. Once taken, the units stay spent whatever the vendor answers: a vendor limit
    # means the phone really is saturated, and a failed send may still have been delivered (a
    # timeout after the request left), so giving the units back would let a retry loop pay for
    # the same phone again at once.
    await parts.limiter.hit_all(windows)

    now = utcnow()
    code = new_numeric_code()
    await repository.supersede_codes(session, phone, purpose.value, now)
    session.add(
        SmsCode(
            phone=phone,
            purpose=purpose.value,
            code_hash=hash_code(s.sms_code_pepper.get_secret_value(), phone, purpose.value, code),
            expires_at=now + timedelta(seconds=s.sms_code_ttl_seconds),
            created_at=now,
        )
    )
    await session.flush()
    backend = s.sms_backend.value
    try:
        await parts.sms_sender.send_code(to_e164(phone), code, max(1, s.sms_code_ttl_seconds // 60))
    except SmsRateLimitedError as exc:
        SMS_SENT.labels(backend, "vendor_limited").inc()
        log.warning("sms_vendor_limited", phone=mask_phone(phone), vendor_code=str(exc))
        raise RateLimited(s.sms_cooldown_seconds, detail="vendor limit") from exc
    except SmsSendError as exc:
        SMS_SENT.labels(backend, "failed").inc()
        log.error("sms_send_failed", phone=mask_phone(phone), vendor_code=str(exc))
        raise DependencyUnavailable(detail="sms send failed") from exc
    SMS_SENT.labels(backend, "ok").inc()
    debug = code if (s.debug_codes_enabled and parts.sms_sender.returns_debug_code) else None
    return SentCode(cooldown_seconds=s.sms_cooldown_seconds, debug_code=debug)


async def verify_code(parts: AccountParts, *, phone: str, purpose: CodePurpose, code: str) -> None:
    """Check and consume a code, or raise AUTH_CODE_INVALID.

    Runs in its own transaction, committed whatever the outcome: a wrong guess must stay counted
    even though the request that made it fails and rolls back. Every try, right or wrong, spends
    one of the attempts, so the sixth try fails even with the right code.
    """
    s = parts.settings
    async with unit_of_work(parts.session_factory) as session:
        now = utcnow()
        row = await repository.latest_live_code(session, phone, purpose.value, now)
        if row is None or not await repository.count_attempt(session, row.id, s.sms_code_max_attempts):
            ok = False
        else:
            expected = hash_code(s.sms_code_pepper.get_secret_value(), phone, purpose.value, code)
            ok = constant_time_equals(expected, row.code_hash) and await repository.consume_code(session, row.id, now)
    if not ok:
        raise AppError(ErrorCode.AUTH_CODE_INVALID)
