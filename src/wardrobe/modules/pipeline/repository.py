"""The engine's queries on tasks and their steps: the lease, the step rows, the terminal transition.

Each takes the caller's session and at most flushes; the engine and the run own the transactions.
A worker's writes to a task are conditional on its lease (``lease_owner``), so a worker that lost
the task changes nothing of it: whoever holds the lease settles the races, in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import PipelineSchema, StepStatus, Task, TaskStatus, TaskStep, User

# lease_owner of a queued task whose claim was deferred by the per-user limit (no lease: claimable).
WAITING_FOR_USER_PLACE = "waiting:user-limit"


# -- the task's lease ------------------------------------------------------------------------------


async def take_lease(session: AsyncSession, task_id: int, worker_id: str, now: datetime, until: datetime) -> bool:
    """Take the task (queued or running) if nobody holds a live lease on it, or if ``worker_id``
    holds it already. True when this update won it."""
    result = await session.execute(
        update(Task)
        .where(
            Task.id == task_id,
            Task.status.in_([TaskStatus.QUEUED.value, TaskStatus.RUNNING.value]),
            (Task.lease_expires_at.is_(None)) | (Task.lease_expires_at < now) | (Task.lease_owner == worker_id),
        )
        .values(
            status=TaskStatus.RUNNING.value,
            lease_owner=worker_id,
            lease_expires_at=until,
            runs=Task.runs + 1,
            updated_at=now,
        )
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def mark_started(session: AsyncSession, task_id: int, now: datetime) -> tuple[str, datetime] | None:
    """The task's first start (a resumed run keeps the first one). On the first start, the task's
    feature and creation time (what its queue wait is measured by); None on a resumed run."""
    result = await session.execute(
        update(Task).where(Task.id == task_id, Task.started_at.is_(None)).values(started_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    row = (await session.execute(select(Task.feature_key, Task.created_at).where(Task.id == task_id))).one()
    return str(row.feature_key), row.created_at


async def user_has_room(session: AsyncSession, task_id: int, now: datetime, max_running: int) -> bool:
    """Whether the owner of ``task_id`` (just claimed in this transaction) stays within the
    per-user limit. Claims of one user's tasks are serialised on the user's row (FOR UPDATE on
    MariaDB/PostgreSQL; SQLite's single writer lock is already held by the claim), and the count
    runs after the lock, so two workers can never both take the last place."""
    user_id = await session.scalar(select(Task.user_id).where(Task.id == task_id))
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())
    running = await session.scalar(
        select(func.count())
        .select_from(Task)
        .where(
            Task.user_id == user_id,
            Task.status == TaskStatus.RUNNING.value,
            Task.lease_expires_at > now,
            Task.id != task_id,
        )
    )
    return int(running or 0) < max_running


async def mark_waiting_for_user_place(session: AsyncSession, task_id: int) -> None:
    """A queued task whose claim the per-user limit deferred: the user's next task to finish sends
    it again (``wake_next_waiting``)."""
    await session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.QUEUED.value, Task.lease_owner.is_(None))
        .values(lease_owner=WAITING_FOR_USER_PLACE)
    )


async def wake_next_waiting(session: AsyncSession, user_id: int) -> int | None:
    """The user's oldest task that a claim deferred for the per-user limit, made claimable again;
    None when there is none."""
    next_id = await session.scalar(
        select(Task.id)
        .where(
            Task.user_id == user_id,
            Task.status == TaskStatus.QUEUED.value,
            Task.lease_owner == WAITING_FOR_USER_PLACE,
        )
        .order_by(Task.id)
        .limit(1)
    )
    if next_id is not None:
        await session.execute(update(Task).where(Task.id == next_id).values(lease_owner=None))
    return next_id


async def end_lease(session: AsyncSession, task_id: int, worker_id: str, now: datetime) -> bool:
    """Let the lease of a running task we hold expire now. True when we held it."""
    result = await session.execute(
        update(Task)
        .where(Task.id == task_id, Task.lease_owner == worker_id, Task.status == TaskStatus.RUNNING.value)
        .values(lease_expires_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def renew_lease(session: AsyncSession, task_id: int, worker_id: str, until: datetime) -> bool:
    """Extend our lease of a running task. False when it is no longer ours (or no longer running)."""
    result = await session.execute(
        update(Task)
        .where(Task.id == task_id, Task.lease_owner == worker_id, Task.status == TaskStatus.RUNNING.value)
        .values(lease_expires_at=until)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def lease_owner(session: AsyncSession, task_id: int) -> str | None:
    return await session.scalar(select(Task.lease_owner).where(Task.id == task_id))


async def cancel_requested(session: AsyncSession, task_id: int) -> bool | None:
    return await session.scalar(select(Task.cancel_requested).where(Task.id == task_id))


# -- a run's task and steps ------------------------------------------------------------------------


async def trace_of(session: AsyncSession, task_id: int) -> tuple[str, str | None, str | None] | None:
    """A task's public id and the trace it carries (trace id, W3C traceparent)."""
    row = (
        await session.execute(select(Task.public_id, Task.trace_id, Task.trace_parent).where(Task.id == task_id))
    ).first()
    return None if row is None else (row[0], row[1], row[2])


async def load_run(
    session: AsyncSession, task_id: int
) -> tuple[Task | None, PipelineSchema | None, dict[str, TaskStep]]:
    """The task, its pipeline and its persisted steps by step id."""
    task = await session.get(Task, task_id)
    schema = await session.get(PipelineSchema, task.pipeline_schema_id) if task else None
    rows = await session.scalars(select(TaskStep).where(TaskStep.task_id == task_id))
    return task, schema, {r.step_id: r for r in rows}


async def save_step(
    session: AsyncSession,
    task_id: int,
    step_id: str,
    status: StepStatus,
    now: datetime,
    *,
    provider: str | None = None,
    attempt: int | None = None,
    vendor_task_id: str | None = None,
    account: str | None = None,
    outputs: dict[str, Any] | None = None,
    error: str | None = None,
    finished: bool = False,
) -> TaskStep:
    """Write a step's state (its row is made on its first write). ``provider`` also records the
    account (None: the provider's settings); ``attempt`` counts one more attempt."""
    row = await session.scalar(select(TaskStep).where(TaskStep.task_id == task_id, TaskStep.step_id == step_id))
    if row is None:
        row = TaskStep(task_id=task_id, step_id=step_id, started_at=now, attempts=0, outputs={})
        session.add(row)
    row.status = status.value
    if provider is not None:
        if row.provider != provider:
            row.vendor_task_id = None
        row.provider = provider
        row.account = account
    if attempt is not None:
        row.attempts = (row.attempts or 0) + 1
    if vendor_task_id is not None:
        row.vendor_task_id = vendor_task_id
    if outputs is not None:
        row.outputs = outputs
    if error is not None:
        row.error = error[:500]
    if finished:
        row.finished_at = now
    await session.flush()
    return row


async def raise_progress(session: AsyncSession, task_id: int, worker_id: str, progress: int, now: datetime) -> None:
    """Progress only grows, and only the lease holder moves it."""
    await session.execute(
        update(Task)
        .where(Task.id == task_id, Task.lease_owner == worker_id, Task.progress < progress)
        .values(progress=progress, updated_at=now)
    )


async def step_outputs(session: AsyncSession, task_id: int) -> Sequence[dict[str, Any]]:
    """What each step of the task stored."""
    return (await session.scalars(select(TaskStep.outputs).where(TaskStep.task_id == task_id))).all()


# -- the end -------------------------------------------------------------------------------------


async def finish_task(session: AsyncSession, task_id: int, worker_id: str, values: dict[str, Any]) -> bool:
    """The terminal transition of a running task, only by its lease holder. True when it was ours."""
    result = await session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.RUNNING.value, Task.lease_owner == worker_id)
        .values(**values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def mark_refunded(session: AsyncSession, task_id: int) -> None:
    await session.execute(update(Task).where(Task.id == task_id).values(refunded=True))
