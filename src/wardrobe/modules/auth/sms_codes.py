"""SMS verification codes (B1, F3): hashed, 5-minute TTL, 5 tries, cooldown and daily caps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError, DependencyUnavailable, ErrorCode, RateLimited
from wardrobe.core.infra import Infra
from wardrobe.core.logging import get_logger, mask_phone
from wardrobe.core.metrics import SMS_SENT
from wardrobe.core.ratelimit import per_day, per_hour, per_seconds
from wardrobe.core.security import constant_time_equals, hash_code, new_numeric_code
from wardrobe.models import SmsCode
from wardrobe.models.base import utcnow
from wardrobe.modules.auth import repository
from wardrobe.modules.auth.phone import to_e164
from wardrobe.modules.auth.sms_senders import SmsRateLimitedError, SmsSendError

log = get_logger("wardrobe.auth.sms")


class CodePurpose(StrEnum):
    LOGIN = "login"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a secret
    BIND_PHONE = "bind_phone"
    DELETE_ACCOUNT = "delete_account"


@dataclass(frozen=True, slots=True)
class SentCode:
    cooldown_seconds: int
    debug_code: str | None


async def send_code(
    session: AsyncSession, infra: Infra, *, phone: str, purpose: CodePurpose, client_ip: str
) -> SentCode:
    """Limit, store the hash, send. The answer is the same whether or not the phone is registered."""
    s = infra.settings
    limiter = infra.limiter
    await limiter.hit([per_seconds(1, s.sms_cooldown_seconds)], "sms-cooldown", phone)
    await limiter.hit([per_day(s.sms_daily_cap_per_phone)], "sms-phone-day", phone)
    await limiter.hit([per_hour(s.sms_hourly_cap_per_ip), per_day(s.sms_daily_cap_per_ip)], "sms-ip", client_ip)

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
        await infra.sms_sender.send_code(to_e164(phone), code, max(1, s.sms_code_ttl_seconds // 60))
    except SmsRateLimitedError as exc:
        SMS_SENT.labels(backend, "vendor_limited").inc()
        log.warning("sms_vendor_limited", phone=mask_phone(phone), vendor_code=str(exc))
        raise RateLimited(s.sms_cooldown_seconds, detail="vendor limit") from exc
    except SmsSendError as exc:
        SMS_SENT.labels(backend, "failed").inc()
        log.error("sms_send_failed", phone=mask_phone(phone), vendor_code=str(exc))
        raise DependencyUnavailable(detail="sms send failed") from exc
    SMS_SENT.labels(backend, "ok").inc()
    debug = code if (s.debug_codes_enabled and infra.sms_sender.returns_debug_code) else None
    return SentCode(cooldown_seconds=s.sms_cooldown_seconds, debug_code=debug)


async def verify_code(infra: Infra, *, phone: str, purpose: CodePurpose, code: str) -> None:
    """Check and consume a code, or raise AUTH_CODE_INVALID.

    Runs in its own transaction, committed whatever the outcome: a wrong guess must stay counted
    even though the request that made it fails and rolls back. Every try, right or wrong, spends
    one of the attempts, so the sixth try fails even with the right code.
    """
    s = infra.settings
    async with unit_of_work(infra.session_factory) as session:
        now = utcnow()
        row = await repository.latest_live_code(session, phone, purpose.value, now)
        if row is None or not await repository.count_attempt(session, row.id, s.sms_code_max_attempts):
            ok = False
        else:
            expected = hash_code(s.sms_code_pepper.get_secret_value(), phone, purpose.value, code)
            ok = constant_time_equals(expected, row.code_hash) and await repository.consume_code(session, row.id, now)
    if not ok:
        raise AppError(ErrorCode.AUTH_CODE_INVALID)
