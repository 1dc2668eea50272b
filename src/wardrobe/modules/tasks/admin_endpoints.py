"""HTTP routes of /api/v1/admin/tasks: the support console reads any user's tasks with their
internals, cancels open ones with a refund and retries failed ones at no charge.

They live in the tasks module, not in admin: they act through the tasks module's own cancel and
creation paths, and the modules' order lets tasks use admin, never the other way round."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from wardrobe.core.deps import AnnouncerDep, SessionDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.pagination import CursorQuery, decode_cursor
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import Principal, require
from wardrobe.core.schemas import Id
from wardrobe.modules.tasks import admin_service as service
from wardrobe.modules.tasks.admin_repository import TaskFilter
from wardrobe.modules.tasks.admin_schemas import (
    ActionReason,
    AdminTaskDetail,
    AdminTaskPage,
    ErrorCodeQuery,
    FeatureQuery,
    FromQuery,
    ProviderQuery,
    StatusQuery,
    ToQuery,
)
from wardrobe.modules.tasks.parts import TaskPartsDep
from wardrobe.modules.tasks.presenter import TaskViewsDep

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Reader = Annotated[Principal, Depends(require(Permission.TASKS_READ))]
Actor = Annotated[Principal, Depends(require(Permission.TASKS_ACT))]
DENIED = (*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED)
TaskId = Annotated[str, Path(min_length=1, max_length=64, description="The public task id")]


@router.get(
    "/tasks",
    summary="Any user's tasks, newest first, with internal errors (keyset pagination, filters)",
    description="Filters combine: `user_id`, `status`, `feature`, `provider` (one of its steps ran there), "
    "`error_code` (internal), `from`/`to` (created in [from, to)).",
    response_model=Envelope[AdminTaskPage],
    responses=errors(*DENIED),
)
async def list_tasks(
    _: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
    user_id: Annotated[Id | None, Query()] = None,
    status: StatusQuery = None,
    feature: FeatureQuery = None,
    provider: ProviderQuery = None,
    error_code: ErrorCodeQuery = None,
    created_from: FromQuery = None,
    created_to: ToQuery = None,
) -> OrjsonResponse:
    before = decode_cursor(cursor) if cursor else None
    where = TaskFilter(
        user_id=user_id,
        status=status,
        feature=feature,
        provider=provider,
        error_code=error_code,
        created_from=created_from,
        created_to=created_to,
    )
    items, next_cursor = await service.list_tasks(session, where, limit=limit, before_id=before)
    return ok({"items": items, "next_cursor": next_cursor})


@router.get(
    "/tasks/{task_id}",
    summary="One task with its steps, providers, vendor job ids, internal errors, quota hold and ledger",
    response_model=Envelope[AdminTaskDetail],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def get_task(task_id: TaskId, _: Reader, views: TaskViewsDep, session: SessionDep) -> OrjsonResponse:
    task = await service.load(session, task_id)
    return ok(await service.detail(session, views, task))


@router.post(
    "/tasks/{task_id}/cancel",
    summary="Cancel a queued or running task and refund its quota",
    description="A queued task is canceled and refunded at once; a running one stops at its next step "
    "boundary and is refunded then (the answer shows `cancel_requested`). The refund happens exactly once, "
    "whoever cancels or ends the task first. A finished task, or one whose cancel was already asked for, "
    "answers `CONFLICT`. Audited (`task.cancel`).",
    response_model=Envelope[AdminTaskDetail],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND, ErrorCode.CONFLICT),
)
async def cancel_task(
    task_id: TaskId,
    body: ActionReason,
    actor: Actor,
    announcer: AnnouncerDep,
    views: TaskViewsDep,
    session: SessionDep,
) -> OrjsonResponse:
    task = await service.cancel(session, announcer, actor_id=actor.id, public_id=task_id, reason=body.reason)
    return ok(await service.detail(session, views, task))


@router.post(
    "/tasks/{task_id}/retry",
    status_code=201,
    summary="Retry a failed task at no charge (a new task of the same user)",
    description="The new task has the same feature, inputs and pipeline version, costs nothing (no quota is "
    "held) and names the failed one in `retry_of`; it is queued like any task. Only failed tasks, once "
    "each: a second retry, or a task that did not fail, answers `CONFLICT`. Audited (`task.retry`).",
    response_model=Envelope[AdminTaskDetail],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND, ErrorCode.CONFLICT),
)
async def retry_task(
    task_id: TaskId,
    body: ActionReason,
    actor: Actor,
    parts: TaskPartsDep,
    views: TaskViewsDep,
    session: SessionDep,
) -> OrjsonResponse:
    task = await service.retry(session, parts, actor_id=actor.id, public_id=task_id, reason=body.reason)
    return ok(await service.detail(session, views, task), status_code=201)
