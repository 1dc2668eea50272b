"""The support console's rules on tasks: what explains a task (why it failed, where its quota
went), and the two things an operator may do to one — cancel it with a refund, or retry a failed
one at no charge. Both go through the same paths as the owner's actions and the engine's, so the
money moves exactly once whoever acts first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.audit import add_audit
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.outbox import Announcer
from wardrobe.core.pagination import split_page
from wardrobe.models import Task, TaskStatus, TaskStep, User, UserStatus
from wardrobe.modules.admin.reads import task_row
from wardrobe.modules.pipeline.engine import hold_ref
from wardrobe.modules.tasks import admin_repository as repo
from wardrobe.modules.tasks import service
from wardrobe.modules.tasks.parts import TaskParts
from wardrobe.modules.tasks.presenter import TaskViews
from wardrobe.modules.tasks.service import CancelOutcome


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)


def _row(task: Task, providers: list[str], retry_of: str | None) -> dict[str, Any]:
    """The user detail's task row, plus what the support list also shows."""
    return task_row(task, providers, retry_of) | {
        "cancel_requested": task.cancel_requested,
        "updated_at": task.updated_at,
        "deleted_at": task.deleted_at,
    }


async def list_tasks(
    session: AsyncSession, where: repo.TaskFilter, *, limit: int, before_id: int | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of any users' tasks, newest first, and the cursor of the next."""
    tasks, next_cursor = split_page(await repo.page(session, where, limit=limit + 1, before_id=before_id), limit, _id)
    providers = await repo.providers_of(session, [t.id for t in tasks])
    retried = await repo.public_ids(session, {t.retry_of for t in tasks if t.retry_of is not None})
    rows = [
        _row(t, providers.get(t.id, []), retried.get(t.retry_of) if t.retry_of is not None else None) for t in tasks
    ]
    return rows, next_cursor


def _id(task: Task) -> int:
    return task.id


async def load(session: AsyncSession, public_id: str) -> Task:
    task = await repo.by_public_id(session, public_id)
    if task is None:
        raise NotFound()
    return task


def _step(step_id: str, row: TaskStep | None) -> dict[str, Any]:
    if row is None:  # not reached yet
        return {
            "step_id": step_id,
            "status": "pending",
            "provider": None,
            "account": None,
            "attempts": 0,
            "vendor_task_id": None,
            "error": None,
            "started_at": None,
            "finished_at": None,
            "duration_ms": None,
        }
    return {
        "step_id": step_id,
        "status": row.status,
        "provider": row.provider,
        "account": row.account,
        "attempts": row.attempts,
        "vendor_task_id": row.vendor_task_id,
        "error": row.error,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "duration_ms": _ms(row.started_at, row.finished_at),
    }


def _outputs(views: TaskViews, task: Task) -> list[dict[str, Any]]:
    found = []
    for item in task.outputs or ():
        key = item.get("object_key")
        if key:
            url = views.storage.download_url(key, views.download_url_ttl_seconds, None)
            found.append(
                {"name": item["name"], "url": url, "content_type": item.get("content_type"), "object_key": key}
            )
        else:
            found.append({"name": item["name"], "value": item.get("value")})
    return found


async def detail(session: AsyncSession, views: TaskViews, task: Task) -> dict[str, Any]:
    """The task with everything that explains it: its steps in pipeline order (with providers,
    accounts, attempts, vendor job ids and internal errors), its quota hold and the ledger rows
    of that hold, its retry links and the staff actions on it."""
    rows = await repo.steps(session, task.id)
    by_step = {r.step_id: r for r in rows}
    # A copy: the views cache the order for the process's life.
    order = list((await views.step_orders(session, {task.pipeline_schema_id}))[task.pipeline_schema_id])
    order += [r.step_id for r in rows if r.step_id not in order]  # not in its pipeline: shown last
    providers = list(dict.fromkeys(r.provider for r in rows if r.provider))
    retry_of = (await repo.public_ids(session, {task.retry_of})).get(task.retry_of) if task.retry_of else None
    ref = hold_ref(task)
    hold = await repo.hold(session, ref)
    return {
        **_row(task, providers, retry_of),
        "inputs": task.inputs or {},
        "outputs": _outputs(views, task),
        "steps": [_step(step_id, by_step.get(step_id)) for step_id in order],
        "hold": None
        if hold is None
        else {
            "ref": hold.ref,
            "amount": hold.amount,
            "status": hold.status,
            "created_at": hold.created_at,
            "expires_at": hold.expires_at,
            "settled_at": hold.settled_at,
        },
        "ledger": [
            {
                "id": e.id,
                "kind": e.kind,
                "amount": e.amount,
                "hold_delta": e.hold_delta,
                "balance_after": e.balance_after,
                "ref": e.ref,
                "created_at": e.created_at,
            }
            for e in await repo.ledger(session, ref)
        ],
        "retried_by": await repo.retried_by(session, task.id),
        "trace_id": task.trace_id,
        "actions": [
            {
                "action": a.action,
                "actor_id": a.actor_id,
                "reason": a.reason,
                "before": a.before,
                "after": a.after,
                "created_at": a.created_at,
            }
            for a in await repo.actions(session, task.public_id)
        ],
    }


async def cancel(session: AsyncSession, announcer: Announcer, *, actor_id: int, public_id: str, reason: str) -> Task:
    """Cancel a queued or running task through the owner's path (``service.request_cancel``): a
    queued one is canceled and refunded now, a running one is stopped and refunded by its lease
    holder. Anything else — finished, or a cancel already asked for — is ``CONFLICT``."""
    task = await load(session, public_id)
    outcome = await service.request_cancel(session, announcer, task)
    if outcome is CancelOutcome.NOTHING:
        raise AppError(ErrorCode.CONFLICT, detail=f"task {public_id} is {task.status}: nothing to cancel")
    await session.flush()
    await session.refresh(task)
    # What the conditional update found, not what was read before it: the engine may have taken
    # the task in between.
    was = TaskStatus.QUEUED if outcome is CancelOutcome.CANCELED else TaskStatus.RUNNING
    add_audit(
        session,
        actor_id=actor_id,
        action="task.cancel",
        target_type=repo.TARGET_TYPE,
        target_id=task.public_id,
        reason=reason,
        before={"status": was.value},
        after={"status": task.status, "cancel_requested": True},
    )
    await session.flush()
    return task


async def retry(session: AsyncSession, parts: TaskParts, *, actor_id: int, public_id: str, reason: str) -> Task:
    """Run a failed task again as a new task of the same user, with the same feature, inputs and
    pipeline version, at no charge (no hold). Once per task: the unique ``retry_of`` settles
    racing retries, the loser gets ``CONFLICT``."""
    failed = await load(session, public_id)
    if failed.status != TaskStatus.FAILED.value:
        raise AppError(ErrorCode.CONFLICT, detail=f"task {public_id} is {failed.status}: only failed tasks are retried")
    if failed.deleted_at is not None or failed.files_purged_at is not None:
        raise AppError(ErrorCode.CONFLICT, detail=f"task {public_id}: its inputs are gone")
    owner = await session.get(User, failed.user_id)
    if owner is None or owner.status != UserStatus.ACTIVE.value or owner.deleted_at is not None:
        raise AppError(ErrorCode.CONFLICT, detail=f"task {public_id}: its owner is not active")
    task = Task(
        public_id=uuid.uuid4().hex,
        user_id=failed.user_id,
        feature_key=failed.feature_key,
        pipeline_schema_id=failed.pipeline_schema_id,
        status=TaskStatus.QUEUED.value,
        progress=0,
        inputs=failed.inputs,
        outputs=[],
        quota_cost=0,
        request_hash=service.request_hash_of(failed.feature_key, failed.inputs),
        retry_of=failed.id,
    )
    try:
        async with session.begin_nested():
            await service.enqueue(session, parts, task)
    except IntegrityError:
        raise AppError(ErrorCode.CONFLICT, detail=f"task {public_id} was retried already") from None
    add_audit(
        session,
        actor_id=actor_id,
        action="task.retry",
        target_type=repo.TARGET_TYPE,
        target_id=failed.public_id,
        reason=reason,
        before={"status": failed.status, "retried_by": None},
        after={"retried_by": task.public_id},
    )
    await session.flush()
    return task
