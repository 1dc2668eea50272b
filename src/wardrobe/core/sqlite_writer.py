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
SQLite itself would ("database is locked"), which the API answers with 503. A wait of a third of
the timeout logs where the holder stands (``sqlite_writer_slow``), and a timeout logs it again
(``sqlite_writer_timeout``): either names the transaction that kept the turn, and any other
connection of the process in a transaction that has written (SQLite's lock may be one of theirs).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import weakref
from typing import Any

from sqlalchemy import Engine, event, exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from wardrobe.core.logging import get_logger

log = get_logger("wardrobe.db")
_READS = ("SELECT", "PRAGMA", "WITH", "EXPLAIN")
_QUEUES: weakref.WeakKeyDictionary[Engine, WriterQueue] = weakref.WeakKeyDictionary()


class WriterQueue:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.waiting = 0  # writers queued behind the one writing now
        self._lock: asyncio.Lock | None = None
        self._holder: Any = None
        self._holder_info: dict[str, Any] | None = None
        self._holder_task: asyncio.Task[Any] | None = None
        self._held_since = 0.0
        # Connections out of the pool now, by pool record: the report names any of them still in a
        # transaction that has written, whether or not it holds the turn.
        self._out: dict[int, Any] = {}

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
        event.listen(sync.pool, "checkout", self._on_checkout)
        event.listen(sync.pool, "checkin", self._on_checkin)

    def _before_statement(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if conn is self._holder or statement.lstrip()[:8].upper().startswith(_READS):
            return
        conn.info["writer_task"] = asyncio.current_task()
        self.waiting += 1
        # A wait a third of the way to the timeout is already worth a line naming the holder.
        slow = asyncio.get_running_loop().call_later(self.timeout / 3, self._report_holder, statement, "warning")
        try:
            await_only(asyncio.wait_for(self.lock.acquire(), self.timeout))
        except TimeoutError:
            self._report_holder(statement, "error")
            raise exc.OperationalError(statement, None, sqlite3.OperationalError("database is locked")) from None
        finally:
            slow.cancel()
            self.waiting -= 1
        # One holder at a time: the SQLAlchemy connection (its commit and rollback end the turn)
        # and its pool record (its return to the pool ends it too, if nothing else did).
        self._holder, self._holder_info = conn, conn.info
        self._holder_task = asyncio.current_task()
        self._held_since = time.monotonic()

    def _report_holder(self, statement: str, level: str) -> None:
        # A turn held past the busy timeout is a transaction kept open across something slow (or a
        # waiter behind its own transaction); where the holder stands now names it. Code locations
        # and the statement's verb only: no parameters, nothing personal.
        task = self._holder_task
        where = awaiting(task) if task is not None and not task.done() else []
        log.log(
            logging.ERROR if level == "error" else logging.WARNING,
            "sqlite_writer_timeout" if level == "error" else "sqlite_writer_slow",
            waiting=self.waiting,
            statement=statement.lstrip()[:6].upper(),
            holder=task.get_name() if task is not None else None,
            held_for_s=round(time.monotonic() - self._held_since, 3),
            holder_at=where,
            others_writing=self._others_writing(),
        )

    def _others_writing(self) -> list[dict[str, Any]]:
        """Connections other than the holder's that are inside a transaction which has written:
        SQLite's lock may be theirs (a transaction left open after its turn ended, or a write that
        bypassed the queue), and then even the holder waits."""
        found = []
        for record in list(self._out.values()):
            if record.info is self._holder_info:
                continue
            try:
                open_ = bool(record.driver_connection.in_transaction)
            except (ValueError, AttributeError, sqlite3.ProgrammingError):
                continue  # closed or closing: it holds no lock any more
            if open_:
                task = record.info.get("writer_task")
                found.append(
                    {
                        "task": task.get_name() if task is not None else None,
                        "at": awaiting(task) if task is not None and not task.done() else [],
                    }
                )
        return found

    def _on_checkout(self, _dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        self._out[id(record)] = record

    def _on_checkin(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            self._out.pop(id(record), None)
            record.info.pop("writer_task", None)

    def _release_connection(self, conn: Any) -> None:
        if conn is self._holder:
            self._release()

    def _on_reset(self, _dbapi_connection: Any, record: Any, _state: Any) -> None:
        self._on_close(_dbapi_connection, record)

    def _on_close(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None and self._holder_info is not None and record.info is self._holder_info:
            self._release()

    def _release(self) -> None:
        self._holder = self._holder_info = self._holder_task = None
        self.lock.release()


def awaiting(task: asyncio.Task[Any], limit: int = 60) -> list[str]:
    """Where a suspended task stands: each coroutine of its await chain, outermost first, as
    ``dir/file.py:line function``. ``Task.get_stack`` gives only the outermost frame of a suspended
    coroutine, and ``asyncio.capture_call_graph`` arrives with Python 3.14, so the chain is followed
    here through ``cr_await`` (``gi_yieldfrom`` for generator-based awaitables)."""
    where: list[str] = []
    link: Any = task.get_coro()
    while link is not None and len(where) < limit:
        frame = getattr(link, "cr_frame", None) or getattr(link, "gi_frame", None) or getattr(link, "ag_frame", None)
        if frame is None:
            break
        code = frame.f_code
        where.append(f"{'/'.join(code.co_filename.split('/')[-2:])}:{frame.f_lineno} {code.co_name}")
        link = getattr(link, "cr_await", None) or getattr(link, "gi_yieldfrom", None) or getattr(link, "ag_await", None)
    return where


def writer_queue(engine: AsyncEngine) -> WriterQueue | None:
    """The queue of an engine on SQLite (None for other databases)."""
    return _QUEUES.get(engine.sync_engine)
