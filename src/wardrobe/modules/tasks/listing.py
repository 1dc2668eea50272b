"""`GET /api/v1/tasks`, the hottest read (clients poll it): one round trip to the database.

The generic path costs three queries through ORM entities (the login session and user, the page of
tasks, their steps) and spent ~4 ms of CPU per request. Here one Core statement returns the login
session's validity columns joined with the page of tasks and each task's step statuses, as plain
rows; the session rules are still decided by ``check_session``, the one function every
authenticated path uses, so revocation and disabled accounts act on the very next request here too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, Row, Select, bindparam, select

from wardrobe.core.infra import Infra
from wardrobe.core.pagination import encode_cursor
from wardrobe.core.security import AccessClaims
from wardrobe.models import AuthSession, Task, TaskStep, User
from wardrobe.modules.auth.deps import check_session
from wardrobe.modules.tasks.presenter import step_orders, view

# The columns a view needs (presenter.TaskFields), under the same names.
_COLUMNS = (
    Task.id,
    Task.public_id,
    Task.feature_key,
    Task.pipeline_schema_id,
    Task.status,
    Task.progress,
    Task.outputs,
    Task.error_code,
    Task.quota_cost,
    Task.refunded,
    Task.created_at,
    Task.updated_at,
)


@functools.cache
def _statement(with_before: bool, with_status: bool, with_feature: bool) -> Select[Any]:
    """The statement for one combination of filters, built once: values travel as bound
    parameters, so building it and computing its cache key are not paid per request."""
    page = select(Task.user_id, *_COLUMNS).where(Task.user_id == bindparam("user_id"))
    if with_before:
        page = page.where(Task.id < bindparam("before_id"))
    if with_status:
        page = page.where(Task.status == bindparam("status"))
    if with_feature:
        page = page.where(Task.feature_key == bindparam("feature"))
    tasks = page.order_by(Task.id.desc()).limit(bindparam("limit", type_=Integer)).subquery("page")
    # The session's row is there whenever the session exists: the page is LEFT JOINed to it, so an
    # empty page still answers with the session's columns, and an unknown session with no row.
    return (
        select(
            AuthSession.user_id.label("session_user_id"),
            AuthSession.revoked_at,
            User.status.label("user_status"),
            tasks,
            TaskStep.step_id,
            TaskStep.status.label("step_status"),
        )
        .select_from(AuthSession)
        .join(User, User.id == AuthSession.user_id)
        .outerjoin(tasks, tasks.c.user_id == AuthSession.user_id)
        .outerjoin(TaskStep, TaskStep.task_id == tasks.c.id)
        .where(AuthSession.id == bindparam("session_id"))
        .order_by(tasks.c.id.desc())
    )


async def list_page(
    infra: Infra,
    claims: AccessClaims,
    *,
    limit: int,
    before_id: int | None,
    status: str | None,
    feature: str | None,
) -> dict[str, Any]:
    """The caller's page of tasks, newest first, as ``{"items", "next_cursor"}``."""
    stmt = _statement(before_id is not None, bool(status), bool(feature))
    params = {
        "user_id": claims.user_id,
        "session_id": claims.session_id,
        "limit": limit + 1,
        "before_id": before_id,
        "status": status,
        "feature": feature,
    }
    async with infra.engine.connect() as conn:
        rows: Sequence[Row[Any]] = (await conn.execute(stmt, params)).all()
        first = rows[0] if rows else None
        check_session(
            claims,
            first.session_user_id if first is not None else None,
            first.revoked_at if first is not None else None,
            first.user_status if first is not None else "",
        )
        tasks: dict[int, Row[Any]] = {}
        known: dict[int, dict[str, str]] = {}
        for row in rows:
            if row.id is None:
                continue  # the session's row of an empty page
            tasks.setdefault(row.id, row)
            if row.step_id is not None:
                known.setdefault(row.id, {})[row.step_id] = row.step_status
        page = list(tasks.values())
        next_cursor = encode_cursor(page[limit - 1].id) if len(page) > limit else None
        page = page[:limit]
        schema_ids = {row.pipeline_schema_id for row in page}
        if schema_ids - infra.pipeline_steps_cache.keys():
            async with infra.session_factory(bind=conn) as session:
                orders = await step_orders(session, infra, schema_ids)
        else:
            orders = {i: infra.pipeline_steps_cache[i] for i in schema_ids}
    items = [view(row, orders[row.pipeline_schema_id], known.get(row.id, {}), infra) for row in page]
    return {"items": items, "next_cursor": next_cursor}
