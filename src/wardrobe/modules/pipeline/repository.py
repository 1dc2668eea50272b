"""The engine's queries on tasks and their steps: the lease, the step rows, the terminal transition.

Each takes the caller's session and at most flushes; the engine and the run own the transactions.
A worker's writes to a task are conditional on its lease (``lease_owner``), so a worker that lost
the task changes nothing of it: whoever holds the lease settles the races, in the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Executable, bindparam, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter

from wardrobe.models import PipelineSchema, StepStatus, Task, TaskStatus, TaskStep, User

# lease_owner of a queued task whose claim was deferred by the per-user limit (no lease: claimable).
WAITING_FOR_USER_PLACE = "waiting:user-limit"


async def _core(session: AsyncSession, statement: Executable) -> CursorResult[Any]:
    """Run a write as a plain Core statement on the session's connection (in its transaction).
    Through the session, the ORM would first match each UPDATE's criteria against its identity
    map, which costs CPU on every step and finds nothing: the engine's sessions hold no objects
    it writes this way."""
    connection = await session.connection()
    return await connection.execute(statement)


# -- the task's lease ------------------------------------------------------------------------------


async def take_lease(session: AsyncSession, task_id: int, worker_id: str, now: datetime, until: datetime) -> bool:
    """Take the task (queued or running) if nobody holds a live lease on it, or if ``worker_id``
    holds it already. True when this update won it. A first claim also marks the task started
    (``runs`` is then 1); a resumed run keeps the first start."""
    result = await _core(
        session,
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
            started_at=func.coalesce(Task.started_at, now),
            updated_at=now,
        ),
    )
    return bool(result.rowcount == 1)


async def user_has_room(session: AsyncSession, task_id: int, user_id: int, now: datetime, max_running: int) -> bool:
    """Whether ``user_id``, the owner of ``task_id`` (just claimed in this transaction), stays
    within the per-user limit. Claims of one user's tasks are serialised on the user's row (FOR
    UPDATE on MariaDB/PostgreSQL; SQLite's single writer lock is already held by the claim), and
    the count runs after the lock, so two workers can never both take the last place."""
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
    result = await _core(
        session,
        update(Task)
        .where(Task.id == task_id, Task.lease_owner == worker_id, Task.status == TaskStatus.RUNNING.value)
        .values(lease_expires_at=now),
    )
    return bool(result.rowcount == 1)


async def renew_lease(session: AsyncSession, task_id: int, worker_id: str, until: datetime) -> bool:
    """Extend our lease of a running task. False when it is no longer ours (or no longer running)."""
    result = await _core(
        session,
        update(Task)
        .where(Task.id == task_id, Task.lease_owner == worker_id, Task.status == TaskStatus.RUNNING.value)
        .values(lease_expires_at=until),
    )
    return bool(result.rowcount == 1)


async def cancel_requested(session: AsyncSession, task_id: int) -> bool | None:
    return await session.scalar(select(Task.cancel_requested).where(Task.id == task_id))


# -- a run's task and steps ------------------------------------------------------------------------


async def load_task(session: AsyncSession, task_id: int) -> Task | None:
    return await session.get(Task, task_id)


async def pipeline_definition(session: AsyncSession, schema_id: int) -> dict[str, Any] | None:
    return await session.scalar(select(PipelineSchema.definition).where(PipelineSchema.id == schema_id))


async def load_steps(session: AsyncSession, task_id: int) -> dict[str, TaskStep]:
    """The task's persisted steps by step id."""
    rows = await session.scalars(select(TaskStep).where(TaskStep.task_id == task_id))
    return {r.step_id: r for r in rows}


# The statements a run sends at every step, built once: each execution then only binds its values
# (building and keying a statement per call was a good part of a step's CPU).
_HOLD = (
    update(Task)
    .where(
        Task.id == bindparam("p_task"),
        Task.lease_owner == bindparam("p_worker"),
        Task.status == TaskStatus.RUNNING.value,
    )
    .values(updated_at=bindparam("p_now"))
)
_HOLD_AND_PROGRESS = _HOLD.values(
    progress=case((Task.progress < bindparam("p_progress"), bindparam("p_progress")), else_=Task.progress)
)


async def hold_task(session: AsyncSession, task_id: int, worker_id: str, now: datetime, progress: int | None) -> bool:
    """Whether this worker still holds the running task, checked by an update of its row: from here
    to the commit nobody else can take or end the task, so the writes that follow in the same
    transaction are the lease holder's. ``progress`` (only ever raised) is written with it."""
    params: dict[str, Any] = {"p_task": task_id, "p_worker": worker_id, "p_now": now}
    if progress is not None:
        params["p_progress"] = progress
    connection = await session.connection()
    result = await connection.execute(_HOLD if progress is None else _HOLD_AND_PROGRESS, params)
    return bool(result.rowcount == 1)


def new_step(task_id: int, step_id: str, now: datetime) -> TaskStep:
    """A step's first state, kept in a run's memory until ``write_step`` inserts it."""
    return TaskStep(
        task_id=task_id,
        step_id=step_id,
        status=StepStatus.RUNNING.value,
        provider=None,
        attempts=0,
        vendor_task_id=None,
        account=None,
        outputs={},
        error=None,
        started_at=now,
        finished_at=None,
    )


STEP_FIELDS = (
    "status",
    "provider",
    "attempts",
    "vendor_task_id",
    "account",
    "outputs",
    "error",
    "started_at",
    "finished_at",
)


_STEP_VALUES: dict[str, BindParameter[Any]] = {name: bindparam(f"p_{name}") for name in (*STEP_FIELDS, "updated_at")}
_INSERT_STEP = insert(TaskStep).values(task_id=bindparam("p_task"), step_id=bindparam("p_step"), **_STEP_VALUES)
_UPDATE_STEP = (
    update(TaskStep)
    .where(TaskStep.task_id == bindparam("p_task"), TaskStep.step_id == bindparam("p_step"))
    .values(**_STEP_VALUES)
)


async def write_step(session: AsyncSession, row: TaskStep, *, new: bool, now: datetime) -> None:
    """Write a step's state as the run holds it (a row the run keeps in memory, not in a session):
    one INSERT for a step not yet persisted, otherwise one UPDATE."""
    params: dict[str, Any] = {f"p_{name}": getattr(row, name) for name in STEP_FIELDS}
    params.update(p_updated_at=now, p_task=row.task_id, p_step=row.step_id)
    connection = await session.connection()
    await connection.execute(_INSERT_STEP if new else _UPDATE_STEP, params)


# -- the end -------------------------------------------------------------------------------------


async def finish_task(session: AsyncSession, task_id: int, worker_id: str, values: dict[str, Any]) -> bool:
    """The terminal transition of a running task, only by its lease holder. True when it was ours."""
    result = await _core(
        session,
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.RUNNING.value, Task.lease_owner == worker_id)
        .values(**values),
    )
    return bool(result.rowcount == 1)


async def mark_refunded(session: AsyncSession, task_id: int) -> None:
    await session.execute(update(Task).where(Task.id == task_id).values(refunded=True))
