"""`GET /api/v1/tasks`, the hottest read (clients poll it): plain rows, one connection, and on the
common path two cheap indexed queries.

The generic path runs three queries through ORM entities (the login session and its user, the
page, its steps) and spent ~4 ms of CPU per request. Here the page query carries the session check
as an uncorrelated ``EXISTS`` (evaluated once, then the page is read backwards on
``(user_id, id)``: exactly ``limit + 1`` rows, no sort), so a page that comes back proves the session
valid. Only when no row comes back — an empty page, or a session that is not valid — is the login
session read, and ``check_session``, the function every authenticated path uses, decides which error
it is. The ``EXISTS`` predicate mirrors ``check_session``'s rules; a test holds the two together.
A single statement joining the session to the page was tried first: MariaDB then sorted every one of
the user's tasks in a temporary table for each request (see bench/README.md).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, Row, Select, bindparam, exists, select

from wardrobe.core.context import user_id_var
from wardrobe.core.infra import Infra
from wardrobe.core.pagination import encode_cursor
from wardrobe.core.security import AccessClaims
from wardrobe.models import AuthSession, Task, TaskStep, User, UserStatus
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


# The session is usable: what check_session asks, as SQL.
_SESSION_VALID = exists(
    select(AuthSession.id)
    .join(User, User.id == AuthSession.user_id)
    .where(
        AuthSession.id == bindparam("session_id"),
        AuthSession.user_id == bindparam("user_id"),
        AuthSession.revoked_at.is_(None),
        User.status == UserStatus.ACTIVE.value,
    )
)
_SESSION = (
    select(AuthSession.user_id, AuthSession.revoked_at, User.status)
    .join(User, User.id == AuthSession.user_id)
    .where(AuthSession.id == bindparam("session_id"))
)
_STEPS = select(TaskStep.task_id, TaskStep.step_id, TaskStep.status).where(
    TaskStep.task_id.in_(bindparam("task_ids", expanding=True))
)


@functools.cache
def _page(with_before: bool, with_status: bool, with_feature: bool) -> Select[Any]:
    """The page statement for one combination of filters, built once: values travel as bound
    parameters, so neither building it nor computing its cache key is paid per request."""
    stmt = select(*_COLUMNS).where(Task.user_id == bindparam("user_id"), _SESSION_VALID)
    if with_before:
        stmt = stmt.where(Task.id < bindparam("before_id"))
    if with_status:
        stmt = stmt.where(Task.status == bindparam("status"))
    if with_feature:
        stmt = stmt.where(Task.feature_key == bindparam("feature"))
    return stmt.order_by(Task.id.desc()).limit(bindparam("limit", type_=Integer))


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
    params: dict[str, Any] = {"user_id": claims.user_id, "session_id": claims.session_id, "limit": limit + 1}
    if before_id is not None:
        params["before_id"] = before_id
    if status:
        params["status"] = status
    if feature:
        params["feature"] = feature
    async with infra.engine.connect() as conn:
        rows: Sequence[Row[Any]] = (
            await conn.execute(_page(before_id is not None, bool(status), bool(feature)), params)
        ).all()
        if not rows:
            # Empty page or unusable session: read the session and let check_session decide.
            found = (await conn.execute(_SESSION, {"session_id": claims.session_id})).first()
            check_session(claims, *(found if found is not None else (None, None, "")))
            return {"items": [], "next_cursor": None}
        next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
        page = rows[:limit]
        known: dict[int, dict[str, str]] = {}
        for task_id, step_id, step_status in await conn.execute(_STEPS, {"task_ids": [r.id for r in page]}):
            known.setdefault(task_id, {})[step_id] = step_status
        schema_ids = {row.pipeline_schema_id for row in page}
        if schema_ids - infra.pipeline_steps_cache.keys():
            async with infra.session_factory(bind=conn) as session:
                orders = await step_orders(session, infra, schema_ids)
        else:
            orders = {i: infra.pipeline_steps_cache[i] for i in schema_ids}
    user_id_var.set(claims.user_id)
    items = [view(row, orders[row.pipeline_schema_id], known.get(row.id, {}), infra) for row in page]
    return {"items": items, "next_cursor": next_cursor}
