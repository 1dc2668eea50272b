"""Retention: users' files are kept ``WARDROBE_RETENTION_DAYS`` (30 by default; 0 = for ever).

Two sweeps, both driven by the database (cheap, indexed, no bucket listing), in batches:

1. Finished tasks whose ``finished_at`` is older than the cut-off: their results (what the task
   and its steps stored) and their input uploads are deleted, then the task is marked
   ``files_purged_at`` with its outputs emptied, so clients see a task whose files expired rather
   than download links that fail. The row stays (the ledger names it).
2. Verified uploads older than the cut-off.

An upload still named by a task that is open or finished within the period, or by the user's
avatar, is kept: its age is that of the newest task using it. Objects nothing references at all
(an upload never completed, a result of a task that is gone) are the orphan sweep's (gc.py).

Objects are deleted before the rows are marked: if the store fails, nothing is marked and the next
pass tries again; if the marking fails, the next pass deletes objects already gone, which is fine.
A task created between a batch's reference check and its delete that names a just-expired upload
fails with ``input_changed`` and is refunded, as with the orphan sweep.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.models import Task, TaskStatus, TaskStep, User, VerifiedUpload
from wardrobe.models.base import utcnow
from wardrobe.modules.storage import keys
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.storage.gc import keys_in_url, object_keys_in

TASK_BATCH = 200
UPLOAD_BATCH = 500
# A pass stops after this many batches of each kind; the next pass goes on (the scheduler's tick
# must not be held for hours by a first run over years of data).
MAX_BATCHES = 50
FINISHED = (TaskStatus.SUCCEEDED.value, TaskStatus.FAILED.value, TaskStatus.CANCELED.value)


@dataclass(slots=True)
class RetentionReport:
    tasks_purged: int = 0
    uploads_deleted: int = 0
    uploads_kept: int = 0  # old, but a live task or the avatar still uses them
    objects_deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def task_objects(user_id: int, inputs: Any, outputs: Any, step_outputs: Iterable[Any]) -> tuple[set[str], set[str]]:
    """(uploads, results) a task names: its input uploads (the owner's own) and what it or its
    steps stored (results and intermediates)."""
    uploads = {k for k in object_keys_in(inputs) if keys.owner_of(k) == user_id and k.startswith(f"{keys.UPLOADS}/")}
    results = {
        k
        for value in (outputs, *step_outputs)
        for k in object_keys_in(value)
        if k.startswith((f"{keys.RESULTS}/", f"{keys.TMP}/"))
    }
    return uploads, results


async def live_references(session: AsyncSession, user_id: int, cutoff: datetime) -> set[str]:
    """Keys still named by a user's tasks that keep their files (open, or finished after
    ``cutoff``), plus the avatar's."""
    stmt = select(Task.inputs, Task.outputs).where(
        Task.user_id == user_id,
        Task.files_purged_at.is_(None),
        or_(Task.status.not_in(FINISHED), Task.finished_at >= cutoff),
    )
    found: set[str] = set()
    for inputs, outputs in (await session.execute(stmt)).all():
        found.update(object_keys_in(inputs))
        found.update(object_keys_in(outputs))
    avatar = await session.scalar(select(User.avatar_url).where(User.id == user_id))
    if avatar:
        found.update(keys_in_url(avatar))
    return found


async def _delete(storage: ObjectStorage, doomed: list[str], report: RetentionReport) -> None:
    for start in range(0, len(doomed), 1000):
        chunk = doomed[start : start + 1000]
        await storage.delete_many(chunk)
        report.objects_deleted += len(chunk)


async def _task_batch(
    sessions: async_sessionmaker[AsyncSession], storage: ObjectStorage, cutoff: datetime, report: RetentionReport
) -> int:
    async with sessions() as session:
        tasks = (
            await session.execute(
                select(Task.id, Task.user_id, Task.inputs, Task.outputs)
                .where(
                    Task.files_purged_at.is_(None),
                    Task.finished_at < cutoff,
                    Task.status.in_(FINISHED),
                )
                .order_by(Task.finished_at, Task.id)
                .limit(TASK_BATCH)
            )
        ).all()
        if not tasks:
            return 0
        steps: dict[int, list[Any]] = {}
        for task_id, outputs in await session.execute(
            select(TaskStep.task_id, TaskStep.outputs).where(TaskStep.task_id.in_([t.id for t in tasks]))
        ):
            steps.setdefault(task_id, []).append(outputs)
        kept = {user_id: await live_references(session, user_id, cutoff) for user_id in {t.user_id for t in tasks}}
    doomed: set[str] = set()
    uploads: set[str] = set()
    for task in tasks:
        task_uploads, results = task_objects(task.user_id, task.inputs, task.outputs, steps.get(task.id, []))
        task_uploads -= kept[task.user_id]
        uploads |= task_uploads
        doomed |= task_uploads | (results - kept[task.user_id])
    await _delete(storage, sorted(doomed), report)
    now = utcnow()
    async with unit_of_work(sessions) as session:
        await session.execute(
            update(Task)
            .where(Task.id.in_([t.id for t in tasks]), Task.files_purged_at.is_(None))
            .values(outputs=[], files_purged_at=now)
            .execution_options(synchronize_session=False)
        )
        if uploads:
            await session.execute(delete(VerifiedUpload).where(VerifiedUpload.object_key.in_(sorted(uploads))))
    report.tasks_purged += len(tasks)
    return len(tasks)


async def _upload_batch(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    cutoff: datetime,
    after: tuple[datetime, int] | None,
    report: RetentionReport,
) -> tuple[datetime, int] | None:
    """One batch of old verified uploads, read on (verified_at, id) after ``after``; the position
    to go on from, or None at the end (kept uploads are passed over, not read again and again)."""
    async with sessions() as session:
        stmt = (
            select(VerifiedUpload.id, VerifiedUpload.object_key, VerifiedUpload.user_id, VerifiedUpload.verified_at)
            .where(VerifiedUpload.verified_at < cutoff)
            .order_by(VerifiedUpload.verified_at, VerifiedUpload.id)
            .limit(UPLOAD_BATCH)
        )
        if after is not None:
            stmt = stmt.where(
                or_(
                    VerifiedUpload.verified_at > after[0],
                    (VerifiedUpload.verified_at == after[0]) & (VerifiedUpload.id > after[1]),
                )
            )
        rows = (await session.execute(stmt)).all()
        if not rows:
            return None
        kept = {user_id: await live_references(session, user_id, cutoff) for user_id in {r.user_id for r in rows}}
    doomed = [r for r in rows if r.object_key not in kept[r.user_id]]
    report.uploads_kept += len(rows) - len(doomed)
    if doomed:
        await _delete(storage, [r.object_key for r in doomed], report)
        async with unit_of_work(sessions) as session:
            await session.execute(delete(VerifiedUpload).where(VerifiedUpload.id.in_([r.id for r in doomed])))
        report.uploads_deleted += len(doomed)
    last = rows[-1]
    return (last.verified_at, last.id) if len(rows) == UPLOAD_BATCH else None


async def apply_retention(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    *,
    days: int,
    now: datetime | None = None,
) -> RetentionReport:
    """One pass of both sweeps; ``days`` 0 keeps everything."""
    report = RetentionReport()
    if days <= 0:
        return report
    cutoff = (now or utcnow()) - timedelta(days=days)
    for _ in range(MAX_BATCHES):
        if await _task_batch(sessions, storage, cutoff, report) < TASK_BATCH:
            break
    position: tuple[datetime, int] | None = None
    for _ in range(MAX_BATCHES):
        position = await _upload_batch(sessions, storage, cutoff, position, report)
        if position is None:
            break
    return report
