"""Vendor callbacks: signed callback URLs, and the inbox that records what vendors POST.

Some vendors sign nothing (RunningHub's webhook carries no signature), so the proof is ours: every
callback URL we hand a vendor names the step it is about (``ref``) and carries an HMAC of it under
``WARDROBE_VENDOR_CALLBACK_SECRET``. A callback is recorded once per vendor event (duplicates only
count a delivery) and is a hint: the worker running the step confirms it with the vendor.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.models import VendorCallback
from wardrobe.settings import Settings

CALLBACK_PATH = "/api/v1/callbacks"


def step_ref(task_public_id: str, step_id: str) -> str:
    """The step a callback is about: ``{task}.{step}`` (step ids are identifiers, no dots)."""
    return f"{task_public_id}.{step_id}"


def _signature(secret: str, provider: str, ref: str) -> str:
    message = f"{provider}\n{ref}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


def callback_url(settings: Settings, provider: str, ref: str) -> str | None:
    """The URL a vendor calls back for ``ref``, or None when no public base URL is configured
    (then the step is only polled)."""
    base = settings.vendor_callback_base_url.rstrip("/")
    if not base:
        return None
    sig = _signature(settings.vendor_callback_secret.get_secret_value(), provider, ref)
    return f"{base}{CALLBACK_PATH}/{quote(provider)}/{quote(ref)}?sig={sig}"


def signature_ok(settings: Settings, provider: str, ref: str, sig: str) -> bool:
    expected = _signature(settings.vendor_callback_secret.get_secret_value(), provider, ref)
    return hmac.compare_digest(expected, sig)


@dataclass(frozen=True, slots=True)
class CallbackEvent:
    """One vendor callback, parsed by the vendor's adapter."""

    event_id: str  # unique per vendor event (duplicates share it)
    event_type: str
    vendor_task_id: str | None
    payload: Mapping[str, Any]


class CallbackForged(ValueError):
    """A callback body whose vendor signature does not verify: refused (403), never recorded."""


@runtime_checkable
class VerifiesCallbacks(Protocol):
    """A provider that reads and verifies its own callbacks (its key is its configuration, as
    for SCF). The endpoint prefers it over ``PARSERS``."""

    def parse_callback(self, body: bytes) -> CallbackEvent: ...


async def record(sessions: async_sessionmaker[AsyncSession], provider: str, ref: str, event: CallbackEvent) -> bool:
    """Put the callback in the inbox; True if it is new, False for a duplicate (counted)."""
    try:
        async with unit_of_work(sessions) as session:
            session.add(
                VendorCallback(
                    provider=provider,
                    event_id=event.event_id[:128],
                    event_type=event.event_type[:48],
                    ref=ref[:96],
                    vendor_task_id=(event.vendor_task_id or "")[:96] or None,
                    payload=dict(event.payload),
                    deliveries=1,
                )
            )
        return True
    except IntegrityError:
        async with unit_of_work(sessions) as session:
            await session.execute(
                update(VendorCallback)
                .where(VendorCallback.provider == provider, VendorCallback.event_id == event.event_id[:128])
                .values(deliveries=VendorCallback.deliveries + 1)
            )
        return False


async def vendor_job_for(sessions: async_sessionmaker[AsyncSession], provider: str, ref: str) -> str | None:
    """The vendor job a callback for ``ref`` named, if one came: how a submit whose answer was
    lost finds the job it created instead of creating another."""
    async with sessions() as session:
        found = await session.scalar(
            select(VendorCallback.vendor_task_id)
            .where(
                VendorCallback.provider == provider,
                VendorCallback.ref == ref,
                VendorCallback.vendor_task_id.is_not(None),
            )
            .order_by(VendorCallback.id)
            .limit(1)
        )
    return found


async def callback_payloads(
    sessions: async_sessionmaker[AsyncSession], provider: str, ref: str
) -> list[dict[str, Any]]:
    """What every callback recorded for ``ref`` said, oldest first: for vendors whose callback is
    the result itself (SCF), which the step's poll reads and verifies again."""
    async with sessions() as session:
        rows = await session.scalars(
            select(VendorCallback.payload)
            .where(VendorCallback.provider == provider, VendorCallback.ref == ref)
            .order_by(VendorCallback.id)
        )
        return [dict(payload) for payload in rows]
