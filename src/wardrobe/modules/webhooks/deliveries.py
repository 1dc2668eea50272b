"""Recording deliveries (``fan_out``) and making their attempts (``attempt_due``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.audit import add_audit
from wardrobe.core.db import unit_of_work
from wardrobe.core.logging import get_logger
from wardrobe.models import Order, Task, WebhookDelivery, WebhookEndpoint
from wardrobe.models.base import utcnow
from wardrobe.modules.providers.base import ProviderError
from wardrobe.modules.providers.fetch import SafeFetcher
from wardrobe.modules.webhooks.events import events_of
from wardrobe.modules.webhooks.secrets import signer
from wardrobe.settings import Settings

log = get_logger("wardrobe.webhooks")

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
# How long an attempt may take, and how long a claimed delivery stays ours before another sender
# may take it (a sender that died mid-attempt).
ATTEMPT_SECONDS = 10.0
CLAIM_SECONDS = 60.0


async def fan_out(sessions: async_sessionmaker[AsyncSession], settings: Settings, payload: dict[str, Any]) -> int:
    """One pending delivery per endpoint subscribed to each event of ``payload``; returns how many
    were recorded (a message published again records nothing new)."""
    # Every task's end comes here, and most users have no endpoint: one read answers that first.
    async with sessions() as session:
        endpoints = list(await session.scalars(_endpoints_of(payload)))
    if not endpoints:
        return 0
    async with unit_of_work(sessions) as session:
        events = await events_of(session, payload, settings.webhook_quota_low)
        wanted = [(e, event) for event in events for e in endpoints if event.type in e.events]
        if not wanted:
            return 0
        known = set(
            (
                await session.execute(
                    select(WebhookDelivery.endpoint_id, WebhookDelivery.event_id).where(
                        WebhookDelivery.endpoint_id.in_({e.id for e, _ in wanted}),
                        WebhookDelivery.event_id.in_({event.id for _, event in wanted}),
                    )
                )
            ).all()
        )
        now = utcnow()
        fresh = [
            WebhookDelivery(
                endpoint_id=e.id,
                event_id=event.id,
                event_type=event.type,
                payload=event.body(now),
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            for e, event in wanted
            if (e.id, event.id) not in known
        ]
        session.add_all(fresh)
        try:
            await session.flush()
        except IntegrityError:
            # Recorded meanwhile by another relay's pass over a copy of the message: nothing to add.
            await session.rollback()
            return 0
    return len(fresh)


def _endpoints_of(payload: dict[str, Any]) -> Select[WebhookEndpoint]:
    """The enabled endpoints of the user a push's subject (a task or an order) belongs to."""
    subject: Any = Task if "task_id" in payload else Order
    subject_id = int(payload.get("task_id", payload.get("order_id", 0)))
    return (
        select(WebhookEndpoint)
        .join(subject, subject.user_id == WebhookEndpoint.user_id)
        .where(subject.id == subject_id, WebhookEndpoint.disabled_at.is_(None))
    )


@dataclass(frozen=True, slots=True)
class _Claimed:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint


async def _claim(session: AsyncSession, delivery: WebhookDelivery, now: datetime) -> bool:
    moved = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
        )
        .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
    )
    return bool(getattr(moved, "rowcount", 0))


async def _claim_due(sessions: async_sessionmaker[AsyncSession], limit: int) -> list[_Claimed]:
    now = utcnow()
    claimed = []
    async with unit_of_work(sessions) as session:
        rows = (
            await session.execute(
                select(WebhookDelivery, WebhookEndpoint)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        ).all()
        for delivery, endpoint in rows:
            if await _claim(session, delivery, now):
                claimed.append(_Claimed(delivery, endpoint))
    return claimed


async def _send(fetcher: SafeFetcher, settings: Settings, claimed: _Claimed) -> tuple[int | None, str | None]:
    """One attempt: (the receiver's status, or None and why no answer came)."""
    delivery, endpoint = claimed.delivery, claimed.endpoint
    if endpoint.disabled_at is not None:
        return None, "endpoint disabled"
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    at = utcnow()
    key = settings.webhook_secret_key.get_secret_value()
    signature = signer(key, endpoint.id, endpoint.secret_salt).sign(delivery.event_id, at, body)
    headers = [
        ("Content-Type", "application/json"),
        ("webhook-id", delivery.event_id),
        ("webhook-timestamp", str(int(at.timestamp()))),
        ("webhook-signature", signature),
    ]
    try:
        return await fetcher.post(endpoint.url, body, headers, timeout_seconds=ATTEMPT_SECONDS), None
    except ProviderError as exc:
        return None, f"{exc.code}: {exc}"[:200]


async def attempt_due(
    sessions: async_sessionmaker[AsyncSession], fetcher: SafeFetcher, settings: Settings, *, limit: int = 20
) -> int:
    """Attempt the deliveries that are due; returns how many were attempted."""
    claimed = await _claim_due(sessions, limit)
    for item in claimed:
        status, error = await _send(fetcher, settings, item)
        await _record(sessions, settings, item, status, error)
    return len(claimed)


async def seconds_to_next(sessions: async_sessionmaker[AsyncSession]) -> float | None:
    """How long until the soonest pending attempt (0 if one is due); None if none is pending."""
    async with unit_of_work(sessions) as session:
        soonest = await session.scalar(
            select(func.min(WebhookDelivery.next_attempt_at)).where(WebhookDelivery.status == PENDING)
        )
    return None if soonest is None else max(0.0, (soonest - utcnow()).total_seconds())


def _next_wait(settings: Settings, attempts: int) -> float:
    waits = settings.webhook_retry_seconds or [60.0]
    return waits[min(attempts - 1, len(waits) - 1)]


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    item: _Claimed,
    status: int | None,
    error: str | None,
) -> None:
    delivery, endpoint = item.delivery, item.endpoint
    now = utcnow()
    ok = status is not None and 200 <= status < 300
    attempts = delivery.attempts + 1
    window = timedelta(hours=settings.webhook_retry_hours)
    values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error}
    if ok:
        values |= {"status": SUCCEEDED, "delivered_at": now, "next_attempt_at": None, "last_error": None}
    elif endpoint.disabled_at is not None or now >= delivery.created_at + window:
        values |= {"status": FAILED, "next_attempt_at": None}
    else:
        values["next_attempt_at"] = now + timedelta(seconds=_next_wait(settings, attempts))
    async with unit_of_work(sessions) as session:
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values))
        if ok:
            await session.execute(
                update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id).values(failing_since=None)
            )
        elif endpoint.disabled_at is None:
            await _note_failure(session, endpoint, now, window)


async def _note_failure(session: AsyncSession, endpoint: WebhookEndpoint, now: datetime, window: timedelta) -> None:
    """Count the endpoint as failing since its first failed attempt after a success; failing for
    the whole retry window, it is disabled (its owner sees why and may enable it again)."""
    since = endpoint.failing_since or now
    if since > now - window:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint.id, WebhookEndpoint.failing_since.is_(None))
            .values(failing_since=now)
        )
        return
    reason = f"every delivery failed since {since.isoformat(timespec='seconds')}"
    moved = await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint.id, WebhookEndpoint.disabled_at.is_(None))
        .values(disabled_at=now, disabled_reason=reason)
    )
    if getattr(moved, "rowcount", 0):
        log.warning("webhook_endpoint_disabled", endpoint=endpoint.id, user_id=endpoint.user_id)
        add_audit(
            session,
            actor_id=None,
            action="webhook.disable",
            target_type="webhook_endpoint",
            target_id=str(endpoint.id),
            reason=reason,
            before={"disabled_at": None},
            after={"disabled_at": now.isoformat()},
        )
