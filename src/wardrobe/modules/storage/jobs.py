"""Periodic work of the storage module (run by ``worker/scheduler.py``; the pending deletions and
retention also in the API process in embedded mode)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.logging import get_logger
from wardrobe.modules.storage import gc, lifecycle, pending_deletions, retention
from wardrobe.modules.storage.backend import ObjectStorage

log = get_logger("wardrobe.storage.jobs")


async def expire_tmp_objects(storage: ObjectStorage) -> int:
    """On the local backend: intermediates older than a day (a bucket does it by its rule)."""
    return await lifecycle.expire_local(storage)


async def collect_storage_garbage(
    session_factory: async_sessionmaker[AsyncSession], storage: ObjectStorage, *, grace: timedelta
) -> int:
    """Unreferenced uploads and results past the grace period (gc.py)."""
    report = await gc.collect_garbage(
        storage,
        gc.database_references(session_factory),
        grace=grace,
        forget=gc.database_forget(session_factory),
    )
    log.info("storage_gc", **report.as_dict())
    return report.deleted


async def delete_pending_objects(session_factory: async_sessionmaker[AsyncSession], storage: ObjectStorage) -> int:
    """Objects of deleted tasks and accounts the request could not delete (storage down, or a
    task of a deleted account still running then), retried with back-off until gone."""
    report = await pending_deletions.process_due(session_factory, storage)
    if report.rows_failed:
        log.warning("pending_deletions_failed", rows=report.rows_failed)
    return report.rows_done


async def apply_retention(
    session_factory: async_sessionmaker[AsyncSession], storage: ObjectStorage, *, days: int
) -> int:
    """Uploads and results older than ``days`` (WARDROBE_RETENTION_DAYS; retention.py)."""
    report = await retention.apply_retention(session_factory, storage, days=days)
    log.info("retention", **report.as_dict())
    return report.objects_deleted
