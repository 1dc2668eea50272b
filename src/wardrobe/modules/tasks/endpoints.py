"""HTTP routes of /api/v1/tasks and /api/v1/features."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Query, Request
from sqlalchemy.ext.asyncio import async_sessionmaker

from wardrobe.core.api_keys import is_api_key
from wardrobe.core.db import unit_of_work
from wardrobe.core.deps import (
    AnnouncerDep,
    CacheDep,
    DbEngineDep,
    SessionDep,
    SessionFactoryDep,
    TokensDep,
    parts_of,
)
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.pagination import CursorQuery, decode_cursor
from wardrobe.core.principal import (
    BearerDep,
    CurrentUser,
    TaskCreator,
    TaskReader,
    access_claims,
    key_principal,
)
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.modules.billing import service as billing
from wardrobe.modules.catalog import service as catalog
from wardrobe.modules.catalog.schemas import FeatureOut
from wardrobe.modules.storage.deps import StorageDep
from wardrobe.modules.storage.pending_deletions import delete_pending_objects
from wardrobe.modules.tasks import deletion, listing, service
from wardrobe.modules.tasks.parts import TaskPartsDep
from wardrobe.modules.tasks.presenter import TaskViewsDep, present
from wardrobe.modules.tasks.schemas import TaskCreate, TaskDeleted, TaskOut, TaskPage, TaskStatusName

router = APIRouter(tags=["tasks"])


@router.get(
    "/api/v1/features",
    summary="Features this user may use, with their input forms",
    response_model=Envelope[list[FeatureOut]],
    responses=errors(*AUTH_ERRORS),
)
async def list_features(principal: CurrentUser, cache: CacheDep, session: SessionDep) -> OrjsonResponse:
    membership = await billing.cached_membership(session, cache, principal.id)
    entries = await catalog.visible_features(session, cache, principal.user, membership)
    return ok(
        [
            {
                "key": e.key,
                "name": e.name,
                "description": e.description,
                "name_en": e.name_en,
                "description_en": e.description_en,
                "quota_cost": e.quota_cost,
                "form_schema": e.form_schema,
            }
            for e in entries
        ]
    )


@router.post(
    "/api/v1/tasks",
    status_code=202,
    summary="Run a feature (reserves its quota)",
    description="Send an `Idempotency-Key` header: the same key with the same body returns the same task "
    "and reserves nothing more; with a different body it is `IDEMPOTENCY_CONFLICT`.",
    response_model=Envelope[TaskOut],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.FEATURE_UNAVAILABLE,
        ErrorCode.QUOTA_INSUFFICIENT,
        ErrorCode.IDEMPOTENCY_CONFLICT,
        ErrorCode.CONTENT_BLOCKED,
        ErrorCode.RATE_LIMITED,
    ),
)
async def create_task(
    body: TaskCreate,
    principal: TaskCreator,
    parts: TaskPartsDep,
    views: TaskViewsDep,
    session: SessionDep,
    # Visible ASCII, no spaces: what survives any HTTP hop unchanged (proxies trim whitespace).
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=8, max_length=128, pattern=r"^[!-~]{8,128}$")
    ] = None,
) -> OrjsonResponse:
    task, created = await service.create_task(
        session, parts, principal.user, feature_key=body.feature, inputs=body.inputs, idempotency_key=idempotency_key
    )
    position = await views.queue.position(session, task)
    positions = {task.id: position} if position is not None else None
    [view] = await present(session, views, [task], positions, new=created)
    return ok(view, status_code=202)


@router.get(
    "/api/v1/tasks",
    summary="My tasks, newest first (keyset pagination, filters)",
    # An API key's scope is checked in the route (the lean path takes no ORM session): said here.
    description="An API key (`Bearer wk_…`) with the scope `tasks:read` may call it, as its owner.",
    openapi_extra={"x-api-key-scope": "tasks:read"},
    response_model=Envelope[TaskPage],
    responses=errors(*AUTH_ERRORS),
)
async def list_tasks(
    db: DbEngineDep,
    tokens: TokensDep,
    views: TaskViewsDep,
    credentials: BearerDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
    status: TaskStatusName | None = None,
    feature: Annotated[str | None, Query(max_length=64)] = None,
) -> OrjsonResponse:
    before = decode_cursor(cursor) if cursor else None
    if credentials is not None and is_api_key(credentials.credentials):
        # A business customer's key: checked on the generic path, then the same page of its owner.
        # Its parts looked up here, not as dependencies: the login path (nearly every call) pays nothing.
        parts = parts_of(request)
        async with unit_of_work(parts.get(async_sessionmaker)) as session:
            principal = await key_principal(session, parts.get(RateLimiter), credentials.credentials, "tasks:read")
        page = await listing.list_page(
            db, views, principal.id, limit=limit, before_id=before, status=status, feature=feature
        )
        return ok(page)
    # The lean path (listing.py): no ORM session, one query for the session check and the page.
    claims = access_claims(tokens, credentials)
    return ok(await listing.list_page(db, views, claims, limit=limit, before_id=before, status=status, feature=feature))


@router.get(
    "/api/v1/tasks/{task_id}",
    summary="One of my tasks",
    response_model=Envelope[TaskOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def get_task(task_id: str, principal: TaskReader, views: TaskViewsDep, session: SessionDep) -> OrjsonResponse:
    task = await service.owned_task(session, principal.user, task_id)
    position = await views.queue.position(session, task)
    [view] = await present(session, views, [task], {task.id: position} if position is not None else None)
    return ok(view)


@router.post(
    "/api/v1/tasks/{task_id}/cancel",
    summary="Cancel one of my tasks (refunds its quota)",
    response_model=Envelope[TaskOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def cancel_task(
    task_id: str, principal: CurrentUser, announcer: AnnouncerDep, views: TaskViewsDep, session: SessionDep
) -> OrjsonResponse:
    task = await service.cancel_task(session, announcer, principal.user, task_id)
    [view] = await present(session, views, [task])
    return ok(view)


# -- Deleting a task (the owner's right to delete) ---------------------------------------------


@router.delete(
    "/api/v1/tasks/{task_id}",
    summary="Delete one of my finished tasks and its files",
    description="Only a finished task (succeeded, failed, canceled) can be deleted; a queued or running one "
    "answers `CONFLICT` (cancel it first). Its results, and its input uploads that no other task of "
    "yours uses, are deleted from storage right after; the task then answers 404 everywhere. Its "
    "quota entries stay in the ledger.",
    response_model=Envelope[TaskDeleted],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND, ErrorCode.CONFLICT),
)
async def delete_task(
    task_id: str,
    principal: CurrentUser,
    sessions: SessionFactoryDep,
    storage: StorageDep,
    session: SessionDep,
    background: BackgroundTasks,
) -> OrjsonResponse:
    files = await deletion.delete_task(session, principal.user, task_id)
    # After the response, so after the commit; whatever fails is retried by the scheduler.
    background.add_task(delete_pending_objects, sessions, storage, principal.id)
    return ok({"id": task_id, "files": files})
