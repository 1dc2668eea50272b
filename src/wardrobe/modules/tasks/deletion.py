"""Deleting tasks: the owner's ``DELETE /api/v1/tasks/{id}``, and every open task of an account
that is being deleted.

A deleted task disappears for its owner (404 everywhere) but its row stays: the ledger's
reserve/confirm/cancel rows name it (``task:{public_id}``) and accounting needs to know what they
were for. Its content goes: inputs (prompts, keys), outputs, step results, and the objects — its
results, and its input uploads unless another task of the user still uses them.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.outbox import Announcer
from wardrobe.models import Task, TaskStatus, TaskStep, User, VerifiedUpload
from wardrobe.models.base import utcnow
from wardrobe.modules.storage import pending_deletions
from wardrobe.modules.storage.gc import keys_in_url, object_keys_in
from wardrobe.modules.storage.retention import FINISHED, task_objects
from wardrobe.modules.tasks.service import CancelOutcome, owned_task, request_cancel

OPEN = (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value)


async def _used_elsewhere(session: AsyncSession, user: User, task_id: int) -> set[str]:
    """Keys the user's other (not deleted) tasks and avatar name."""
    found: set[str] = set()
    rows = await session.execute(
        select(Task.inputs, Task.outputs).where(Task.user_id == user.id, Task.id != task_id, Task.deleted_at.is_(None))
    )
    for inputs, outputs in rows.all():
        found.update(object_keys_in(inputs))
        found.update(object_keys_in(outputs))
    if user.avatar_url:
        found.update(keys_in_url(user.avatar_url))
    return found


async def delete_task(session: AsyncSession, user: User, public_id: str) -> int:
    """Delete one of the user's finished tasks; returns how many objects were queued for deletion
    (they leave the store after the commit). A queued or running task answers CONFLICT: cancel it
    first, so that its money is settled before it goes."""
    task = await owned_task(session, user, public_id)
    if task.status not in FINISHED:
        raise AppError(ErrorCode.CONFLICT, data={"reason": "task_not_finished"})
    step_outputs = list(await session.scalars(select(TaskStep.outputs).where(TaskStep.task_id == task.id)))
    uploads, results = task_objects(user.id, task.inputs, task.outputs, step_outputs)
    used = await _used_elsewhere(session, user, task.id)
    uploads -= used
    doomed = uploads | (results - used)
    now = utcnow()
    # Conditional: of two concurrent deletes one wins; the other answers 404 like a deleted task.
    erased = await session.execute(
        update(Task)
        .where(Task.id == task.id, Task.deleted_at.is_(None))
        .values(
            deleted_at=now,
            files_purged_at=now,
            inputs={},
            outputs=[],
            error_message=None,
            # The key may be used again; a retry of the deleted task's creation makes a new task.
            idempotency_key=None,
        )
        .execution_options(synchronize_session=False)
    )
    if erased.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound()
    await session.execute(update(TaskStep).where(TaskStep.task_id == task.id).values(outputs={}, error=None))
    if uploads:
        # No new task can take these uploads from now on (they are no longer verified uploads).
        await session.execute(delete(VerifiedUpload).where(VerifiedUpload.object_key.in_(sorted(uploads))))
    queued = pending_deletions.schedule_keys(session, user.id, doomed, "task_deleted")
    await session.flush()
    return queued


async def cancel_open_tasks(session: AsyncSession, announcer: Announcer, user_id: int) -> tuple[int, int]:
    """Cancel every queued and running task of the user, in the caller's transaction, through
    the one cancel path: (canceled and refunded now, flagged for their lease holder)."""
    tasks = list(await session.scalars(select(Task).where(Task.user_id == user_id, Task.status.in_(OPEN))))
    now_canceled = 0
    for task in tasks:
        now_canceled += await request_cancel(session, announcer, task) is CancelOutcome.CANCELED
    return now_canceled, len(tasks) - now_canceled
