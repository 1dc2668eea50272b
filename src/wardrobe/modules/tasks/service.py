"""The task path."""

from __future__ import annotations

import functools
import hashlib
import uuid
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.db import after_commit
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.metrics import TASK_DURATION, TASKS_CREATED, TASKS_FINISHED
from wardrobe.core.outbox import TOPIC_PUSH, TOPIC_RUN, TOPIC_TASK_CHANGED, Announcer, announce
from wardrobe.core.ratelimit import parse_limits
from wardrobe.core.tracing import stamp
from wardrobe.models import Task, TaskStatus, User
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.modules.billing import service as billing
from wardrobe.modules.catalog import forms
from wardrobe.modules.catalog import service as catalog
from wardrobe.modules.moderation import gates as moderation_gates
from wardrobe.modules.pipeline.engine import hold_ref
from wardrobe.modules.storage import verification
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.storage.keys import RESULTS, UPLOADS, owner_of
from wardrobe.modules.tasks.parts import TaskParts


def request_hash_of(feature: str, inputs: dict[str, Any]) -> str:
    canonical = orjson.dumps({"feature": feature, "inputs": inputs}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


async def _check_images(
    session: AsyncSession, storage: ObjectStorage, user: User, schema: dict[str, Any], inputs: dict[str, Any]
) -> None:
    """Image inputs must be the user's own: uploads verified after they arrived and still the
    object that was verified (same size, and same ETag where the store has one: keys that may still
    write under the user's prefix could have replaced it with other bytes), or results of the
    user's own tasks that still exist (chaining; only the service writes results)."""
    problems = []
    fields = [(field, str(inputs[field])) for field in forms.image_fields(schema) if inputs.get(field) is not None]
    uploads = [(field, key) for field, key in fields if owner_of(key) == user.id and key.startswith(f"{UPLOADS}/")]
    results = [(field, key) for field, key in fields if owner_of(key) == user.id and key.startswith(f"{RESULTS}/")]
    for field, key in fields:
        if (field, key) not in uploads and (field, key) not in results:
            problems.append({"field": f"inputs.{field}", "message": "must be the key of your own upload or result"})
    records = await verification.verified(session, user.id, [key for _, key in uploads]) if uploads else {}
    for field, key in uploads:
        record = records.get(key)
        if record is None:
            problems.append(
                {"field": f"inputs.{field}", "message": "not a verified upload: send the bytes, then complete it"}
            )
            continue
        info = await storage.head(key)
        if info is None:
            problems.append({"field": f"inputs.{field}", "message": "no uploaded object with this key"})
        elif not verification.still_verified(record, info):
            problems.append({"field": f"inputs.{field}", "message": "the object changed since it was verified"})
    if results:
        live = await verification.live_results(session, storage, user.id, [key for _, key in results])
        problems += [
            {"field": f"inputs.{field}", "message": "no result of yours with this key (deleted, or expired)"}
            for field, key in results
            if key not in live
        ]
    if problems:
        raise AppError(ErrorCode.VALIDATION_FAILED, data=problems)


async def _by_idempotency_key(session: AsyncSession, user_id: int, key: str) -> Task | None:
    return await session.scalar(select(Task).where(Task.user_id == user_id, Task.idempotency_key == key))


def _same_request_or_conflict(task: Task, request_hash: str) -> Task:
    if task.request_hash != request_hash:
        raise AppError(ErrorCode.IDEMPOTENCY_CONFLICT)
    return task


async def create_task(
    session: AsyncSession,
    parts: TaskParts,
    user: User,
    *,
    feature_key: str,
    inputs: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[Task, bool]:
    """Validate, reserve the quota and queue the task in one transaction. Returns (task, created);
    the same Idempotency-Key with the same body returns the first task and reserves nothing."""
    request_hash = request_hash_of(feature_key, inputs)
    if idempotency_key:
        existing = await _by_idempotency_key(session, user.id, idempotency_key)
        if existing is not None:
            return _same_request_or_conflict(existing, request_hash), False
    membership = await billing.cached_membership(session, parts.cache, user.id)
    feature = await catalog.usable_feature(session, parts.cache, user, membership, feature_key)
    if feature.rate_limit_policy:
        await parts.limiter.hit(parse_limits(feature.rate_limit_policy), "feature", f"{feature.key}:{user.id}")
    problems = forms.input_errors(feature.form_schema, inputs)
    if problems:
        raise AppError(ErrorCode.VALIDATION_FAILED, data=problems)
    await _check_images(session, parts.storage, user, feature.form_schema, inputs)
    # Content moderation: prompts, before any quota is held or anything is written.
    await moderation_gates.screen_prompts(parts.moderator, feature.form_schema, inputs, user_id=user.id)
    pipeline = await catalog.current_pipeline(session, parts.cache, feature.pipeline_key)
    if pipeline is None:
        raise AppError(ErrorCode.FEATURE_UNAVAILABLE, detail="feature without pipeline")

    task = Task(
        public_id=uuid.uuid4().hex,
        user_id=user.id,
        feature_key=feature.key,
        pipeline_schema_id=pipeline.id,
        status=TaskStatus.QUEUED.value,
        progress=0,
        inputs=inputs,
        outputs=[],
        quota_cost=feature.quota_cost,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    user_id = user.id
    try:
        await enqueue(session, parts, task)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key committed first: answer with its task.
        # The task's row is this transaction's first write, so rolling all of it back undoes only
        # the attempt (a savepoint around it would cost two more round trips on every creation).
        if not idempotency_key:
            raise
        await session.rollback()
        winner = await _by_idempotency_key(session, user_id, idempotency_key)
        if winner is None:
            raise
        return _same_request_or_conflict(winner, request_hash), False
    return task, True


async def enqueue(session: AsyncSession, parts: TaskParts, task: Task) -> None:
    """Write a new task, hold its cost and queue it through the outbox, in the caller's
    transaction. A task that costs nothing (an operator's retry) holds nothing: a hold is always
    positive, and the engine's settlement finds no hold to confirm or release. The task keeps the
    trace id of the request creating it: every run of it logs and pushes under that id."""
    if task.trace_id is None:
        trace = stamp()
        task.trace_id, task.trace_parent = trace["trace_id"], trace["trace_parent"]
    session.add(task)
    await session.flush()
    if task.quota_cost > 0:
        await quota.reserve(
            session,
            task.user_id,
            task.quota_cost,
            ref=hold_ref(task),
            ttl=timedelta(seconds=parts.settings.quota_hold_ttl_seconds),
            fresh=True,
        )
    announce(session, TOPIC_RUN, {"task_id": task.id})
    parts.announcer.local(session, TOPIC_TASK_CHANGED, {"task_id": task.id})
    # Counted once committed: a creation that rolls back (a lost idempotency race) made no task.
    after_commit(session, TASKS_CREATED.labels(task.feature_key).inc)


async def owned_task(session: AsyncSession, user: User, public_id: str) -> Task:
    """Load-or-404: another user's task, or one its owner deleted, is indistinguishable from a
    missing one."""
    task = await session.scalar(
        select(Task).where(Task.public_id == public_id, Task.user_id == user.id, Task.deleted_at.is_(None))
    )
    if task is None:
        raise NotFound()
    return task


class CancelOutcome(Enum):
    CANCELED = "canceled"  # it was queued: canceled and refunded now
    REQUESTED = "requested"  # it was running: its lease holder stops it and refunds
    NOTHING = "nothing"  # finished, or a cancel was already asked for: nothing changed


async def request_cancel(session: AsyncSession, announcer: Announcer, task: Task) -> CancelOutcome:
    """A queued task is canceled and refunded here, at once; a running one is flagged and its lease
    holder stops it at the next step boundary (or poll), then refunds. Finished ones, and running
    ones already flagged, stay as they are. Either way the hold is released exactly once: by this
    conditional update or by the lease holder's terminal one."""
    result = await session.execute(
        update(Task)
        .where(Task.id == task.id, Task.status == TaskStatus.QUEUED.value)
        .values(status=TaskStatus.CANCELED.value, error_code="canceled", cancel_requested=True, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        if await quota.cancel(session, hold_ref(task)):
            await session.execute(update(Task).where(Task.id == task.id).values(refunded=True))
        announcer.durable(session, TOPIC_PUSH, {"task_id": task.id})
        after_commit(session, functools.partial(_count_canceled_in_queue, task.feature_key, task.created_at))
        return CancelOutcome.CANCELED
    flagged = await session.execute(
        update(Task)
        .where(Task.id == task.id, Task.status == TaskStatus.RUNNING.value, Task.cancel_requested.is_(False))
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    return CancelOutcome.REQUESTED if flagged.rowcount == 1 else CancelOutcome.NOTHING  # type: ignore[attr-defined]


def _count_canceled_in_queue(feature: str, created_at: datetime) -> None:
    TASKS_FINISHED.labels(feature, TaskStatus.CANCELED.value).inc()
    TASK_DURATION.labels(feature).observe(max(0.0, (utcnow() - created_at).total_seconds()))


async def cancel_task(session: AsyncSession, announcer: Announcer, user: User, public_id: str) -> Task:
    """The owner's cancel (see ``request_cancel``)."""
    task = await owned_task(session, user, public_id)
    await request_cancel(session, announcer, task)
    await session.flush()
    await session.refresh(task)
    return task
