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

On MySQL/MariaDB the same statements, compiled once by SQLAlchemy, run on the driver's own cursor
(``_DriverQueries``): SQLAlchemy's result layer costs ~0.4 ms of CPU per query over asyncmy's
(performance.md), which on this endpoint is a third of the request. Everything else (the pool, the
statements, the session rules, the view) is shared with the portable path, which SQLite and
PostgreSQL keep; a test holds the two paths to the same answers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Integer, Select, bindparam, exists, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from wardrobe.core.context import user_id_var
from wardrobe.core.pagination import encode_cursor
from wardrobe.core.principal import check_session
from wardrobe.core.security import AccessClaims
from wardrobe.models import AuthSession, Task, TaskStep, User, UserStatus
from wardrobe.modules.tasks.presenter import TaskViews

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
    Task.files_purged_at,
)


# Any of the statements below, whatever its columns.
AnySelect = Select[*tuple[Any, ...]]


class LeanTask(NamedTuple):
    """A page row as presenter.view reads it (the names of ``_COLUMNS``, in their order)."""

    id: int
    public_id: str
    feature_key: str
    pipeline_schema_id: int
    status: str
    progress: int
    outputs: list[dict[str, Any]] | None
    error_code: str | None
    quota_cost: int
    refunded: bool
    created_at: datetime
    updated_at: datetime
    files_purged_at: datetime | None


assert LeanTask._fields == tuple(c.key for c in _COLUMNS)  # noqa: S101 - a definition-time invariant
_VIEW_WIDTH = len(_COLUMNS)


class PushedTask(NamedTuple):
    """What a push of a task reads: its view's columns, its owner and its trace."""

    task: LeanTask
    user_id: int
    trace_id: str | None


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
def _page(with_before: bool, with_status: bool, with_feature: bool, with_session: bool = True) -> Select[Any]:
    """The page statement for one combination of filters, built once: values travel as bound
    parameters, so neither building it nor computing its cache key is paid per request. Without
    ``with_session`` the caller was authenticated otherwise (an API key)."""
    stmt = select(*_COLUMNS).where(Task.user_id == bindparam("user_id"), Task.deleted_at.is_(None))
    if with_session:
        stmt = stmt.where(_SESSION_VALID)
    if with_before:
        stmt = stmt.where(Task.id < bindparam("before_id"))
    if with_status:
        stmt = stmt.where(Task.status == bindparam("status"))
    if with_feature:
        stmt = stmt.where(Task.feature_key == bindparam("feature"))
    return stmt.order_by(Task.id.desc()).limit(bindparam("limit", type_=Integer))


@functools.cache
def _steps_of(count: int) -> AnySelect:
    """The steps statement for ``count`` task ids, without an expanding parameter (which needs
    compiling per call)."""
    ids = [bindparam(f"task_{i}", type_=Integer) for i in range(count)]
    return select(TaskStep.task_id, TaskStep.step_id, TaskStep.status).where(TaskStep.task_id.in_(ids))


@functools.cache
def _tasks_of(count: int) -> AnySelect:
    """The view columns, the owner and the trace of ``count`` tasks by id (the push's read)."""
    ids = [bindparam(f"task_{i}", type_=Integer) for i in range(count)]
    return select(*_COLUMNS, Task.user_id, Task.trace_id).where(Task.id.in_(ids))


@functools.cache
def _compiled(stmt: AnySelect, dialect: Dialect) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """A statement as the driver takes it: its SQL, the order of its parameters, and the values of
    the ones fixed in the statement (``users.status = 'active'``)."""
    compiled = stmt.compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params)


def _lean(row: Sequence[Any]) -> LeanTask:
    """A driver row (asyncmy: naive UTC datetimes, JSON as text, booleans as 0/1) as the column
    types would have made it."""
    outputs = row[6]
    return LeanTask(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        orjson.loads(outputs) if isinstance(outputs, str | bytes) else outputs,
        row[7],
        row[8],
        bool(row[9]),
        row[10].replace(tzinfo=UTC),
        row[11].replace(tzinfo=UTC),
        row[12].replace(tzinfo=UTC) if row[12] is not None else None,
    )


class _CoreQueries:
    """The three reads through SQLAlchemy Core (every dialect)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def page(self, stmt: AnySelect, params: dict[str, Any]) -> Sequence[Any]:
        return (await self.conn.execute(stmt, params)).all()

    async def session(self, session_id: str) -> Sequence[Any] | None:
        return (await self.conn.execute(_SESSION, {"session_id": session_id})).first()

    async def steps(self, task_ids: list[int]) -> Sequence[Sequence[Any]]:
        return (await self.conn.execute(_STEPS, {"task_ids": task_ids})).all()

    async def tasks(self, task_ids: list[int]) -> list[PushedTask]:
        rows = await self.conn.execute(_tasks_of(len(task_ids)), _numbered(task_ids))
        return [PushedTask(LeanTask(*row[:_VIEW_WIDTH]), row.user_id, row.trace_id) for row in rows]


class _DriverQueries(_CoreQueries):
    """The same reads on the driver's cursor (MySQL/MariaDB), from statements compiled once."""

    def __init__(self, conn: AsyncConnection, driver: Any) -> None:
        super().__init__(conn)
        self._driver = driver

    async def _fetch(self, stmt: AnySelect, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        sql, order, fixed = _compiled(stmt, self.conn.dialect)
        values = {**fixed, **params}
        async with self._driver.cursor() as cursor:
            await cursor.execute(sql, tuple(values[name] for name in order))
            rows: Sequence[Sequence[Any]] = await cursor.fetchall()
        return rows

    async def page(self, stmt: AnySelect, params: dict[str, Any]) -> Sequence[Any]:
        return [_lean(row) for row in await self._fetch(stmt, params)]

    async def session(self, session_id: str) -> Sequence[Any] | None:
        rows = await self._fetch(_SESSION, {"session_id": session_id})
        return rows[0] if rows else None

    async def steps(self, task_ids: list[int]) -> Sequence[Sequence[Any]]:
        return await self._fetch(_steps_of(len(task_ids)), _numbered(task_ids))


def _numbered(task_ids: list[int]) -> dict[str, int]:
    return {f"task_{i}": v for i, v in enumerate(task_ids)}


def _queries(conn: AsyncConnection, driver: Any | None) -> _CoreQueries:
    return _DriverQueries(conn, driver) if driver is not None else _CoreQueries(conn)


async def _driver_of(conn: AsyncConnection, driver_path: bool) -> Any | None:
    """asyncmy's own connection under ``conn`` on MySQL/MariaDB (None elsewhere)."""
    if driver_path and conn.dialect.name == "mysql":
        return (await conn.get_raw_connection()).driver_connection
    return None


async def list_page(
    db: AsyncEngine,
    views: TaskViews,
    caller: AccessClaims | int,
    *,
    limit: int,
    before_id: int | None,
    status: str | None,
    feature: str | None,
    driver_path: bool = True,
) -> dict[str, Any]:
    """The caller's page of tasks, newest first, as ``{"items", "next_cursor"}``. ``caller`` is a
    login's verified claims (its session is checked here), or the id of a user authenticated
    otherwise (an API key, checked with its owner on the generic path). ``driver_path`` False keeps
    MySQL on the portable path (the test comparing the two)."""
    claims = caller if isinstance(caller, AccessClaims) else None
    params: dict[str, Any] = {"user_id": claims.user_id if claims else caller, "limit": limit + 1}
    if claims is not None:
        params["session_id"] = claims.session_id
    if before_id is not None:
        params["before_id"] = before_id
    if status:
        params["status"] = status
    if feature:
        params["feature"] = feature
    async with db.connect() as conn:
        queries = _queries(conn, await _driver_of(conn, driver_path))
        rows = await queries.page(_page(before_id is not None, bool(status), bool(feature), claims is not None), params)
        if not rows:
            if claims is not None:
                # Empty page or unusable session: read the session and let check_session decide.
                found = await queries.session(claims.session_id)
                check_session(claims, *(found if found is not None else (None, None, "")))
            return {"items": [], "next_cursor": None}
        next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
        user_id_var.set(params["user_id"])
        items = await _present(queries, views, rows[:limit])
    return {"items": items, "next_cursor": next_cursor}


async def _present(
    queries: _CoreQueries, views: TaskViews, tasks: Sequence[LeanTask], session: AsyncSession | None = None
) -> list[dict[str, Any]]:
    """The views of plain task rows: their steps' statuses in one read, their pipelines' step
    orders from the cache or, on a miss, one more read (on ``session``, else on the queries' own
    connection)."""
    known: dict[int, dict[str, str]] = {}
    for task_id, step_id, step_status in await queries.steps([t.id for t in tasks]):
        known.setdefault(task_id, {})[step_id] = step_status
    schema_ids = {t.pipeline_schema_id for t in tasks}
    orders = views.cached_orders(schema_ids)
    if orders is None and session is not None:
        orders = await views.step_orders(session, schema_ids)
    elif orders is None:
        async with AsyncSession(bind=queries.conn, expire_on_commit=False, autoflush=False) as own:
            orders = await views.step_orders(own, schema_ids)
    return [views.view(t, orders[t.pipeline_schema_id], known.get(t.id, {})) for t in tasks]


async def read_for_push(
    session: AsyncSession, views: TaskViews, task_ids: list[int]
) -> list[tuple[PushedTask, dict[str, Any]]]:
    """The tasks of ``task_ids`` that exist, each with its view as ``task.updated`` carries it: two
    Core reads in the session's transaction (tasks, then their steps) with the task list's columns.
    A push goes out for every step of every task, so it reads plain rows rather than ORM entities
    (half the CPU per query). It stays on SQLAlchemy, unlike the task list's driver path, so that
    its statements pass the engine's hooks (slow-query log, tracing, the statement-count tests)."""
    conn = await session.connection()
    queries = _CoreQueries(conn)
    found = await queries.tasks(task_ids)
    if not found:
        return []
    presented = await _present(queries, views, [p.task for p in found], session)
    return list(zip(found, presented, strict=True))
