"""Objects that must leave the store because their owner deleted them (a task, an account).

The deletion itself is a database change; the objects are on another system that may be down.
So the transaction that deletes a task or an account also writes what is to be deleted here, and
commits whatever the store's state. Right after the commit the request asks for the deletion once;
the scheduler retries whatever is left, with back-off, until it is gone. Deleting an object that
is already gone succeeds, so running a row twice (the request and the scheduler at once) is fine.

A prefix row ("uploads/42/") takes everything of an account. A task of that account that was
running when the account was deleted may still store a result afterwards (it stops at its next
step boundary), so the row stays until the account has no open task left; the pass that finds
none deletes what is left, erases the tasks' contents and drops the row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.core.logging import get_logger
from wardrobe.models import PendingObjectDeletion, Task, TaskStatus, TaskStep
from wardrobe.models.base import utcnow
from wardrobe.modules.storage import keys
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.storage.gc import DELETE_BATCH

log = get_logger("wardrobe.storage.deletions")

OPEN = (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value)
# Back-off between attempts of a row that failed: doubling from 30 s, at most an hour.
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
# A prefix whose account still has an open task is looked at again this soon.
PREFIX_RECHECK = timedelta(minutes=1)


def schedule_keys(session: AsyncSession, user_id: int, object_keys: Iterable[str], reason: str) -> int:
    """Write, in the caller's transaction, that these objects of ``user_id`` must be deleted."""
    rows = [
        PendingObjectDeletion(user_id=user_id, target=key, is_prefix=False, reason=reason)
        for key in sorted(set(object_keys))
        if keys.is_valid_key(key)
    ]
    session.add_all(rows)
    return len(rows)


def account_prefixes(user_id: int) -> list[str]:
    return [f"{keys.UPLOADS}/{int(user_id)}/", f"{keys.RESULTS}/{int(user_id)}/"]


def schedule_account(session: AsyncSession, user_id: int, reason: str) -> None:
    """Everything the account ever stored (its uploads and results), in the caller's transaction."""
    session.add_all(
        PendingObjectDeletion(user_id=user_id, target=prefix, is_prefix=True, reason=reason)
        for prefix in account_prefixes(user_id)
    )


@dataclass(slots=True)
class DeletionReport:
    objects: int = 0  # deleted (S3 counts keys that were already gone too)
    rows_done: int = 0
    rows_failed: int = 0
    rows_waiting: int = 0  # prefixes of accounts that still have an open task


async def has_open_tasks(session: AsyncSession, user_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(Task.user_id == user_id, Task.status.in_(OPEN)))))


async def erase_finished_task_contents(session: AsyncSession, user_id: int, now: datetime) -> None:
    """The inputs (prompts, keys), outputs and step results of every finished task of the user:
    the rows stay for the ledger, their content goes."""
    finished = select(Task.id).where(Task.user_id == user_id, Task.status.not_in(OPEN)).scalar_subquery()
    await session.execute(update(TaskStep).where(TaskStep.task_id.in_(finished)).values(outputs={}, error=None))
    await session.execute(
        update(Task)
        .where(Task.user_id == user_id, Task.status.not_in(OPEN))
        .values(inputs={}, outputs=[], error_message=None, files_purged_at=now)
        .execution_options(synchronize_session=False)
    )


async def _delete_prefix(storage: ObjectStorage, prefix: str) -> int:
    deleted = 0
    start_after: str | None = None
    while True:
        page = await storage.list(prefix, DELETE_BATCH, start_after=start_after)
        if not page:
            return deleted
        start_after = page[-1].key
        deleted += await storage.delete_many(info.key for info in page)


async def _run_prefix(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    row: PendingObjectDeletion,
    report: DeletionReport,
) -> None:
    """One prefix row: done, or kept (waiting) while the account still has an open task. The check
    comes before the listing: a task that ends after it is caught by the next pass."""
    async with sessions() as session:
        waiting = await has_open_tasks(session, row.user_id)
    report.objects += await _delete_prefix(storage, keys.validate_prefix(row.target))
    async with unit_of_work(sessions) as session:
        if waiting:
            await session.execute(
                update(PendingObjectDeletion)
                .where(PendingObjectDeletion.id == row.id)
                .values(next_attempt_at=utcnow() + PREFIX_RECHECK)
            )
            report.rows_waiting += 1
            return
        await erase_finished_task_contents(session, row.user_id, utcnow())
        await session.execute(delete(PendingObjectDeletion).where(PendingObjectDeletion.id == row.id))
    report.rows_done += 1


async def _failed(sessions: async_sessionmaker[AsyncSession], row_ids: list[int], attempts: int) -> None:
    delay = min(MAX_RETRY, FIRST_RETRY * (2 ** min(attempts, 10)))
    async with unit_of_work(sessions) as session:
        await session.execute(
            update(PendingObjectDeletion)
            .where(PendingObjectDeletion.id.in_(row_ids))
            .values(attempts=PendingObjectDeletion.attempts + 1, next_attempt_at=utcnow() + delay)
        )


async def process_due(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    *,
    user_id: int | None = None,
    limit: int = DELETE_BATCH,
) -> DeletionReport:
    """Delete what is due (``user_id``: only that account's, whether due or not — the request
    that just committed it). A store that fails leaves its rows for a later pass, with back-off."""
    report = DeletionReport()
    stmt = select(PendingObjectDeletion).order_by(PendingObjectDeletion.id).limit(limit)
    if user_id is None:
        stmt = stmt.where(PendingObjectDeletion.next_attempt_at <= utcnow())
    else:
        stmt = stmt.where(PendingObjectDeletion.user_id == user_id)
    async with sessions() as session:
        rows = list(await session.scalars(stmt))
    singles = [row for row in rows if not row.is_prefix]
    if singles:
        try:
            report.objects += await storage.delete_many(row.target for row in singles)
        except Exception:
            log.warning("object_deletions_failed", count=len(singles), exc_info=True)
            await _failed(sessions, [row.id for row in singles], min(row.attempts for row in singles))
            report.rows_failed += len(singles)
        else:
            async with unit_of_work(sessions) as session:
                await session.execute(
                    delete(PendingObjectDeletion).where(PendingObjectDeletion.id.in_([row.id for row in singles]))
                )
            report.rows_done += len(singles)
    for row in (row for row in rows if row.is_prefix):
        try:
            await _run_prefix(sessions, storage, row, report)
        except Exception:
            log.warning("prefix_deletion_failed", user_id=row.user_id, exc_info=True)
            await _failed(sessions, [row.id], row.attempts)
            report.rows_failed += 1
    return report


async def delete_pending_objects(
    sessions: async_sessionmaker[AsyncSession], storage: ObjectStorage, user_id: int
) -> None:
    """What a request runs once it has committed a deletion: that account's rows, now. Never
    raises (it runs after the answer); what is left is the scheduler's."""
    try:
        report = await process_due(sessions, storage, user_id=user_id)
    except Exception:
        log.warning("pending_deletions_deferred", user_id=user_id, exc_info=True)
        return
    log.info("pending_deletions_run", user_id=user_id, **asdict(report))
