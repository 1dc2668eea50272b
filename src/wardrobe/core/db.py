"""Async engines for SQLite, MySQL/MariaDB and PostgreSQL, and the session discipline.

One session per request (or job); only its owner commits. Services and repositories ``flush()``.
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.pool import NullPool

from wardrobe.core.slow_queries import watch_slow_queries
from wardrobe.core.sqlite_writer import WriterQueue
from wardrobe.settings import Settings

SQLITE_BUSY_SECONDS = 15.0


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # WAL lets readers run beside the single writer; busy_timeout makes concurrent writers wait
    # for the lock instead of failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # The WAL is rewound after each full checkpoint; this bounds the file it leaves on disk.
    cursor.execute("PRAGMA journal_size_limit=67108864")
    cursor.close()


def _hold_the_wal_open(engine: AsyncEngine, path: str) -> None:
    """Keep one idle connection to the database file for the engine's life.

    Sessions open and close a connection each (NullPool), and when the last connection to a WAL
    database closes, SQLite checkpoints the whole WAL, fsyncs and deletes it while holding an
    exclusive lock: every other connection waits on its busy timeout meanwhile. With one
    connection always open that never happens; the WAL is checkpointed passively as it grows (every
    1000 pages, by the committing connection, without blocking readers or the next writer). The
    anchor never reads or writes, so it holds no snapshot and blocks no checkpoint.
    """
    anchor = sqlite3.connect(path, check_same_thread=False)
    weakref.finalize(engine.sync_engine, anchor.close)


def _sqlite_savepoint(conn: Any, name: str) -> None:
    """Open the transaction before a savepoint if the driver has not yet.

    Python's sqlite3 module begins a transaction itself only before INSERT/UPDATE/DELETE. A
    SAVEPOINT issued first therefore runs outside any transaction, and its RELEASE commits at
    once: a quota hold or an inbox row would outlive the unit of work that rolls back. SQLAlchemy's
    documented alternative (driver autocommit plus a BEGIN for every transaction) would also put
    every read-then-write unit of work in a deferred transaction, which under concurrency fails
    with SQLITE_BUSY on the read-to-write upgrade instead of waiting for the lock; so only the
    savepoint case is changed.
    """
    if not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN")


def _ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    """Test a pooled connection before use only if it sat idle ``idle_seconds`` or more.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: under load that is one extra round trip
    per unit of work (about a fifth of a task's statements) for connections used a moment ago. The
    connections that go stale are idle ones (the server's ``wait_timeout``, a proxy's idle timeout,
    a restart or failover while the pool sat unused), so those are the ones pinged. A failed ping
    raises the pool's own ``InvalidatePoolError`` from the checkout event, the documented hook: the
    pool then drops every connection older than now and hands out a fresh one. A connection that
    dies in the seconds between two uses still fails its statement, as it would mid-transaction
    with any ping, and that failure invalidates the pool the same way.
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # a new connection, or one used a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.InvalidatePoolError() from error
            raise


def _roll_back_only_open_transactions(engine: AsyncEngine) -> None:
    """Return a MySQL/MariaDB connection to the pool with a ROLLBACK only if a transaction is open.

    The pool's default reset rolls back every connection it gets back unless SQLAlchemy itself just
    ended a transaction on it, and after an ORM session's COMMIT it had not: each commit was
    followed by a ROLLBACK round trip. The server reports in every reply whether a transaction is
    open (``SERVER_STATUS_IN_TRANS``, which asyncmy keeps as ``get_transaction_status()``), so a
    connection the server says is idle goes back as it is. This is SQLAlchemy's documented custom
    reset (``pool_reset_on_return=None`` plus the pool's ``reset`` event); anything the driver cannot
    answer for is rolled back as before.
    """

    @event.listens_for(engine.sync_engine, "reset")
    def _reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
        if not state.asyncio_safe or state.transaction_was_reset:
            return  # no I/O possible here, or SQLAlchemy just rolled back itself
        driver = getattr(dbapi_connection, "driver_connection", None)
        status = getattr(driver, "get_transaction_status", None)
        if status is not None and not status():
            return
        dbapi_connection.rollback()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(settings: Settings, *, database_url: str | None = None) -> AsyncEngine:
    """Build the engine with the pool tuned from settings."""
    url = make_url(database_url or settings.database_url)
    # orjson for JSON columns: several times faster than the json module on every row read.
    kwargs: dict[str, Any] = {
        "echo": settings.db_echo,
        "json_serializer": _json_dumps,
        "json_deserializer": orjson.loads,
    }
    anchor_path: str | None = None  # a SQLite file: see _hold_the_wal_open
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            from pathlib import Path

            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            anchor_path = url.database
        # SQLite has one writer; a pool only multiplies lock contention. NullPool opens a
        # connection per session, which for a local file costs microseconds.
        kwargs["poolclass"] = NullPool
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS}
    else:
        kwargs.update(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
            pool_recycle=settings.db_pool_recycle,
            # Pinged only when idle (see _ping_idle_connections), not on every checkout.
            pool_pre_ping=settings.db_pool_pre_ping and settings.db_pool_ping_after_idle_seconds == 0,
        )
        if url.get_backend_name() == "mysql":
            kwargs["connect_args"] = {"charset": "utf8mb4"}
            kwargs["isolation_level"] = "READ COMMITTED"
            kwargs["pool_reset_on_return"] = None  # see _roll_back_only_open_transactions
    # Looked up on the module at each call: OpenTelemetry's SQLAlchemy instrumentation (when on,
    # core/telemetry.py) wraps it there, after this module was imported.
    engine = sqlalchemy_asyncio.create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "savepoint", _sqlite_savepoint)
        WriterQueue(timeout=SQLITE_BUSY_SECONDS).install(engine)
        if anchor_path is not None:
            _hold_the_wal_open(engine, anchor_path)
    elif settings.db_pool_pre_ping and settings.db_pool_ping_after_idle_seconds > 0:
        _ping_idle_connections(engine, settings.db_pool_ping_after_idle_seconds)
    if url.get_backend_name() == "mysql":
        _roll_back_only_open_transactions(engine)
    watch_slow_queries(engine, settings.slow_query_ms)
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session owned by the caller: committed when the block ends cleanly, rolled back otherwise."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@event.listens_for(Session, "after_flush")
def _mark_flush(session: Session, _: Any) -> None:
    session.info["wrote"] = True


@event.listens_for(Session, "do_orm_execute")
def _mark_dml(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info["wrote"] = True


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction has committed; never if it rolls
    back (messages and push events announce only what is durable)."""
    session.sync_session.info.setdefault("after_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop("after_commit", []):
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)


def has_writes(session: AsyncSession) -> bool:
    """Whether this session wrote anything (flushed objects or ran INSERT/UPDATE/DELETE)."""
    sync = session.sync_session
    return bool(sync.info.get("wrote") or sync.new or sync.dirty or sync.deleted)


async def finish(session: AsyncSession) -> None:
    """Commit what the session wrote. A read-only session is not committed: closing it returns the
    connection with one ROLLBACK, where COMMIT + the pool's reset would cost two round trips."""
    if has_writes(session):
        await session.commit()
    session.sync_session.info.pop("wrote", None)


def pool_status(engine: AsyncEngine) -> dict[str, int]:
    pool = engine.pool
    size = getattr(pool, "size", None)
    if not callable(size):
        return {"size": 0, "checked_out": 0, "overflow": 0, "checked_in": 0}
    return {
        "size": int(size()),
        "checked_out": int(pool.checkedout()),  # type: ignore[attr-defined]
        "overflow": int(pool.overflow()),  # type: ignore[attr-defined]
        "checked_in": int(pool.checkedin()),  # type: ignore[attr-defined]
    }
