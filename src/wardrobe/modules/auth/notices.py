"""SMS notices about an account, sent after the change they report has committed.

A notice is written to the outbox in the transaction of the change (so a change that rolls back
tells nobody, and one that commits is told even if this process dies right after) and sent by the
first relay that takes it. The relay publishes in batches, so a notice never fails its batch: one
undeliverable message must not hold up the tasks and pushes behind it. A notice refused by the
vendor's per-number frequency limits (Tencent allows one SMS per number per 30 s by default, and
the owner may just have received a code) is tried again later from this process; any other
failure is logged and dropped.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.logging import get_logger, mask_phone
from wardrobe.core.metrics import SMS_SENT
from wardrobe.core.outbox import announce
from wardrobe.modules.auth.phone import to_e164
from wardrobe.modules.auth.sms_senders import SmsNotice, SmsRateLimitedError, SmsSender, SmsSendError

log = get_logger("wardrobe.auth.notices")
TOPIC_SMS_NOTICE = "sms.notice"
NOTICE_ATTEMPTS = 4
NOTICE_RETRY_SECONDS = 35.0  # past the vendor's per-number 30 s limit
_later: set[asyncio.Task[None]] = set()


def notify_phone_changed(session: AsyncSession, *, old_phone: str, new_phone: str) -> None:
    """Tell the number an account just left where it went (masked), once this commits."""
    payload = {"phone": old_phone, "notice": SmsNotice.PHONE_CHANGED.value, "params": [mask_phone(new_phone)]}
    announce(session, TOPIC_SMS_NOTICE, payload)


async def deliver(sender: SmsSender, backend: str, payload: dict[str, Any]) -> None:
    """The outbox relay's publisher for notices."""
    await _attempt(sender, backend, payload, 1)


async def _attempt(sender: SmsSender, backend: str, payload: dict[str, Any], attempt: int) -> None:
    phone = str(payload["phone"])
    notice = SmsNotice(payload["notice"])
    try:
        await sender.send_notice(to_e164(phone), notice, [str(p) for p in payload.get("params", [])])
    except SmsRateLimitedError as exc:
        if attempt < NOTICE_ATTEMPTS:
            SMS_SENT.labels(backend, "notice_deferred").inc()
            log.warning("sms_notice_deferred", phone=mask_phone(phone), notice=notice.value, vendor_code=exc.code)
            retry = asyncio.ensure_future(_after(NOTICE_RETRY_SECONDS, sender, backend, payload, attempt + 1))
            _later.add(retry)
            retry.add_done_callback(_later.discard)
            return
        _failed(backend, phone, notice, exc)
    except SmsSendError as exc:
        _failed(backend, phone, notice, exc)
    else:
        SMS_SENT.labels(backend, "notice").inc()


async def _after(delay: float, sender: SmsSender, backend: str, payload: dict[str, Any], attempt: int) -> None:
    await asyncio.sleep(delay)
    await _attempt(sender, backend, payload, attempt)


def _failed(backend: str, phone: str, notice: SmsNotice, exc: SmsSendError) -> None:
    SMS_SENT.labels(backend, "notice_failed").inc()
    log.error("sms_notice_failed", phone=mask_phone(phone), notice=notice.value, vendor_code=exc.code)
