"""Periodic jobs for production (``wardrobe scheduler``); one instance per deployment."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy import delete, select

from wardrobe.core.db import unit_of_work
from wardrobe.core.infra import Infra
from wardrobe.core.logging import configure_logging, get_logger
from wardrobe.models import AuthSession, OutboxMessage, RefreshToken, SmsCode
from wardrobe.models.base import utcnow
from wardrobe.modules.users import invite_codes

log = get_logger("wardrobe.scheduler")
TICK_SECONDS = 60.0
# Kept this long after they stop mattering, for support questions and abuse investigations.
RETENTION = timedelta(days=30)
# Published outbox messages are only kept for looking into a recent incident.
OUTBOX_RETENTION = timedelta(days=1)
OUTBOX_PURGE_BATCH = 5000


async def refill_invite_pool(infra: Infra) -> int:
    async with unit_of_work(infra.session_factory) as session:
        return await invite_codes.refill_pool(
            session, infra.settings.invite_pool_target, infra.settings.invite_code_length
        )


async def purge_expired_auth_data(infra: Infra) -> int:
    """Delete SMS codes and refresh tokens long past expiry, and tokens of long-revoked sessions."""
    cutoff = utcnow() - RETENTION
    async with unit_of_work(infra.session_factory) as session:
        codes = await session.execute(delete(SmsCode).where(SmsCode.expires_at < cutoff))
        revoked = select(AuthSession.id).where(AuthSession.revoked_at < cutoff).scalar_subquery()
        tokens = await session.execute(
            delete(RefreshToken).where((RefreshToken.expires_at < cutoff) | RefreshToken.session_id.in_(revoked))
        )
        return int(codes.rowcount + tokens.rowcount)  # type: ignore[attr-defined]


async def purge_published_outbox(infra: Infra) -> int:
    """Delete outbox messages published more than a day ago (every task writes two or three), in
    batches so that no transaction holds many row locks; unpublished ones are never touched."""
    cutoff = utcnow() - OUTBOX_RETENTION
    purged = 0
    while True:
        async with unit_of_work(infra.session_factory) as session:
            ids = list(
                await session.scalars(
                    select(OutboxMessage.id)
                    .where(OutboxMessage.published_at < cutoff)
                    .order_by(OutboxMessage.id)
                    .limit(OUTBOX_PURGE_BATCH)
                )
            )
            if ids:
                await session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        purged += len(ids)
        if len(ids) < OUTBOX_PURGE_BATCH:
            return purged


async def release_expired_holds(infra: Infra) -> int:
    """The sweeper (C3): release holds past their TTL whose task can no longer finish — a task that
    no longer exists or ended without settling. A task still queued or running keeps its hold (the
    reaper gets it moving again, and its worker settles it); each release happens exactly once,
    because a concurrent settlement wins the conditional update and this one then skips."""
    from wardrobe.models import Task, TaskStatus
    from wardrobe.modules.billing import quota

    released = 0
    async with unit_of_work(infra.session_factory) as session:
        refs = await quota.expired_hold_refs(session, utcnow())
        live = set()
        task_refs = {ref.removeprefix("task:"): ref for ref in refs if ref.startswith("task:")}
        if task_refs:
            rows = await session.scalars(
                select(Task.public_id).where(
                    Task.public_id.in_(list(task_refs)),
                    Task.status.in_([TaskStatus.QUEUED.value, TaskStatus.RUNNING.value]),
                )
            )
            live = {task_refs[public_id] for public_id in rows}
    for ref in refs:
        # Refund claw-backs are settled by the refund (payments.reconcile), never released here.
        if ref in live or ref.startswith("refund:"):
            continue
        async with unit_of_work(infra.session_factory) as session:
            released += await quota.cancel(session, ref)
    return released


async def reconcile_payments(infra: Infra) -> int:
    """C8: repair missed payment notifications, close expired orders, settle pending refunds."""
    from wardrobe.modules.payments.reconciliation import reconcile_once

    if not infra.payments.gateways:
        return 0
    report = await reconcile_once(
        infra.session_factory,
        infra.payments,
        settings=infra.settings,
        cache=infra.cache,
        announcer=infra.runtime.announcer,
    )
    if report.discrepancies or report.errors:
        log.warning("payments_reconciled", **report.as_dict())
    return report.fulfilled + report.closed + report.refunds_settled


async def expire_tmp_objects(infra: Infra) -> int:
    """E4 on the local backend: intermediates older than a day (a bucket does it by its rule)."""
    from wardrobe.modules.storage import lifecycle

    return await lifecycle.expire_local(infra.storage)


async def collect_storage_garbage(infra: Infra) -> int:
    """E5: unreferenced uploads and results past the grace period (gc.py)."""
    from wardrobe.modules.storage import gc

    report = await gc.collect_garbage(
        infra.storage,
        gc.database_references(infra.session_factory),
        grace=timedelta(days=infra.settings.storage_gc_grace_days),
        forget=gc.database_forget(infra.session_factory),
    )
    log.info("storage_gc", **report.as_dict())
    return report.deleted


async def delete_pending_objects(infra: Infra) -> int:
    """Objects of deleted tasks and accounts the request could not delete (storage down, or a
    task of a deleted account still running then), retried with back-off until gone."""
    from wardrobe.modules.storage import pending_deletions

    report = await pending_deletions.process_due(infra.session_factory, infra.storage)
    if report.rows_failed:
        log.warning("pending_deletions_failed", rows=report.rows_failed)
    return report.rows_done


async def apply_retention(infra: Infra) -> int:
    """Uploads and results older than WARDROBE_RETENTION_DAYS (storage/retention.py)."""
    from wardrobe.modules.storage import retention

    report = await retention.apply_retention(infra.session_factory, infra.storage, days=infra.settings.retention_days)
    log.info("retention", **report.as_dict())
    return report.objects_deleted


# Embedded mode runs no scheduler process: the API process does these itself, every few minutes.
EMBEDDED_JOBS = (delete_pending_objects, apply_retention)
EMBEDDED_PERIOD_SECONDS = 600.0


async def run_embedded_housekeeping(infra: Infra) -> None:
    while True:
        for job in EMBEDDED_JOBS:
            try:
                await job(infra)
            except Exception:
                log.exception("job_failed", job=job.__name__)
        await asyncio.sleep(EMBEDDED_PERIOD_SECONDS)


async def run_scheduler(once: bool = False) -> None:
    from wardrobe.app import build_infra, close_infra
    from wardrobe.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    infra = build_infra(settings)
    # Jobs run every tick unless listed here with a longer period (a full bucket listing is not a
    # once-a-minute job).
    periods = {
        "collect_storage_garbage": settings.storage_gc_interval_hours * 3600,
        "expire_tmp_objects": 3600,
        "apply_retention": 3600,
    }
    last_run: dict[str, float] = {}

    def due(name: str) -> bool:
        now = time.monotonic()
        if name in last_run and now - last_run[name] < periods.get(name, 0):
            return False
        last_run[name] = now
        return True

    try:
        while True:
            for job in (
                refill_invite_pool,
                purge_expired_auth_data,
                purge_published_outbox,
                release_expired_holds,
                reconcile_payments,
                expire_tmp_objects,
                collect_storage_garbage,
                delete_pending_objects,
                apply_retention,
            ):
                if not due(job.__name__):
                    continue
                try:
                    count = await job(infra)
                    log.info("job_done", job=job.__name__, count=count)
                except Exception:
                    log.exception("job_failed", job=job.__name__)
            if once:
                return
            await asyncio.sleep(TICK_SECONDS)
    finally:
        await close_infra(infra)
