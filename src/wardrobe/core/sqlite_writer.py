"""One queue for the writers of an embedded SQLite database within a process.

SQLite lets one connection write at a time; the others wait in its busy handler, which polls the
lock with sleeps growing to 100 ms until ``busy_timeout`` (15 s) runs out. That wait is not a
queue: under a steady stream of short write transactions (the in-process worker stepping fifty
tasks while requests create more) a waiter can miss every release for 15 s and fail with
"database is locked", whoever came first. Within the process the writers therefore queue on an
``asyncio.Lock`` (first come, first served) before their first write statement, and leave it
when their transaction ends; the database lock then only arbitrates between processes.

Taken from SQLAlchemy's own hooks: the first statement that is not a read (INSERT, UPDATE, DELETE,
SAVEPOINT, BEGIN) waits for the lock inside ``before_cursor_execute``, which runs in the greenlet
of the awaiting task, so ``await_only`` can wait there; ``commit``/``rollback`` and the return of
the connection to the pool release it. A writer that cannot get it within the busy timeout fails as
SQLite itself would ("database is locked"), which the API answers with 503.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from typing import Any

from sqlalchemy import Engine, event, exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

_READS = ("SELECT", "PRAGMA", "WITH", "EXPLAIN")
_QUEUES: weakref.WeakKeyDictionary[Engine, WriterQueue] = weakref.WeakKeyDictionary()


class WriterQueue:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.waiting = 0  # writers queued behind the one writing now
        self._lock: asyncio.Lock | None = None
        self._holder: Any = None
        self._holder_info: dict[str, Any] | None = None

    @property
    def lock(self) -> asyncio.Lock:
        # Made on first use, on the loop that uses the engine.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def install(self, engine: AsyncEngine) -> None:
        _QUEUES[engine.sync_engine] = self
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before_statement)
        event.listen(sync, "commit", self._release_connection)
        event.listen(sync, "rollback", self._release_connection)
        event.listen(sync.pool, "reset", self._on_reset)
        event.listen(sync.pool, "close", self._on_close)

    def _before_statement(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if conn is self._holder or statement.lstrip()[:8].upper().startswith(_READS):
            return
        self.waiting += 1
        try:
            await_only(asyncio.wait_for(self.lock.acquire(), self.timeout))
        except TimeoutError:
            raise exc.OperationalError(statement, None, sqlite3.OperationalError("database is locked")) from None
        finally:
            self.waiting -= 1
        # One holder at a time: the SQLAlchemy connection (its commit and rollback end the turn)
        # and its pool record (its return to the pool ends it too, if nothing else did).
        self._holder, self._holder_info = conn, conn.info

    def _release_connection(self, conn: Any) -> None:
        if conn is self._holder:
            self._release()

    def _on_reset(self, _dbapi_connection: Any, record: Any, _state: Any) -> None:
        self._on_close(_dbapi_connection, record)

    def _on_close(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None and self._holder_info is not None and record.info is self._holder_info:
            self._release()

    def _release(self) -> None:
        self._holder = self._holder_info = None
        self.lock.release()


def writer_queue(engine: AsyncEngine) -> WriterQueue | None:
    """The queue of an engine on SQLite (None for other databases)."""
    return _QUEUES.get(engine.sync_engine)
