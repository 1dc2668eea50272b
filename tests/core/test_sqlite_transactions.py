"""SQLite (the embedded mode) keeps a unit of work atomic, savepoints included, and its writers in
one process queue first come, first served.

Python's sqlite3 module opens transactions itself, only before INSERT/UPDATE/DELETE; a SAVEPOINT
issued first runs outside any transaction it knows of, and its RELEASE commits for good. These
tests fail on an engine without the fix in ``wardrobe.core.db`` (SQLAlchemy's documented recipe).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from structlog.testing import capture_logs

from tests.fixtures.tasks import wait_until
from wardrobe.core.db import create_engine, create_session_factory, unit_of_work
from wardrobe.core.sqlite_writer import WriterQueue, writer_queue
from wardrobe.settings import Environment, Settings

metadata = MetaData()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("text", String(20), unique=True))


class Boom(Exception):
    """What the work raises to make its unit of work roll back."""


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    settings = Settings(env=Environment.TEST, database_url=f"sqlite+aiosqlite:///{tmp_path / 'tx.db'}")
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(notes))).scalar_one())


async def test_a_savepoint_opened_first_rolls_back_with_its_unit_of_work(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)

    async def work() -> None:
        async with unit_of_work(sessions) as session:
            async with session.begin_nested():
                await session.execute(insert(notes).values(text="inside the savepoint"))
            await session.execute(insert(notes).values(text="after it"))
            raise Boom

    with pytest.raises(Boom):
        await work()
    assert await _count(engine) == 0


async def test_a_rolled_back_savepoint_keeps_the_rest_of_the_unit_of_work(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)
    async with unit_of_work(sessions) as session:
        await session.execute(insert(notes).values(text="kept"))

        async def undone() -> None:
            async with session.begin_nested():
                await session.execute(insert(notes).values(text="undone"))
                raise Boom

        with pytest.raises(Boom):
            await undone()
        await session.execute(insert(notes).values(text="also kept"))
    async with engine.connect() as conn:
        texts = sorted((await conn.execute(select(notes.c.text))).scalars())
    assert texts == ["also kept", "kept"]


async def test_a_savepoint_after_a_read_rolls_back_with_its_unit_of_work(engine: AsyncEngine) -> None:
    """A read does not make the driver begin either: the savepoint that follows must."""
    sessions = create_session_factory(engine)

    async def work() -> None:
        async with unit_of_work(sessions) as session:
            seen = await session.scalar(select(func.count()).select_from(notes))
            async with session.begin_nested():
                await session.execute(insert(notes).values(text=f"after {seen}"))
            raise Boom

    with pytest.raises(Boom):
        await work()
    assert await _count(engine) == 0


async def test_writers_in_one_process_take_turns_in_the_order_they_came(engine: AsyncEngine) -> None:
    queue = writer_queue(engine)
    assert queue is not None

    async def write(text: str) -> None:
        async with engine.begin() as conn:
            await conn.execute(insert(notes).values(text=text))

    async with engine.connect() as first:
        await first.execute(insert(notes).values(text="first"))  # holds the write, uncommitted
        writers = []
        for n in range(5):
            writers.append(asyncio.create_task(write(f"w{n}")))

            async def queued(n: int = n) -> bool:
                return queue.waiting == n + 1

            await wait_until(queued, within=10, every=0.01)
        await first.commit()
    await asyncio.gather(*writers)
    async with engine.connect() as conn:
        order = list((await conn.execute(select(notes.c.text).order_by(notes.c.id))).scalars())
    # First come, first served: not whoever SQLite's busy handler happened to poll at the right time.
    assert order == ["first", "w0", "w1", "w2", "w3", "w4"]
    assert queue.waiting == 0


async def _until_a_writer_holds_the_turn(engine: AsyncEngine) -> None:
    queue = writer_queue(engine)
    assert queue is not None

    async def holding() -> bool:
        return queue.lock.locked()

    await wait_until(holding, within=5)


async def test_a_writer_that_waits_past_the_timeout_fails_as_sqlite_would(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'short.db'}", poolclass=NullPool)
    WriterQueue(timeout=0.2).install(engine)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        release = asyncio.Event()

        async def keep_a_transaction_open() -> None:
            async with engine.connect() as first:
                await first.execute(insert(notes).values(text="first"))
                await release.wait()
                await first.commit()

        holder = asyncio.create_task(keep_a_transaction_open(), name="slow-holder")
        await _until_a_writer_holds_the_turn(engine)
        with capture_logs() as logs, pytest.raises(OperationalError, match="database is locked"):
            async with engine.begin() as late:
                await late.execute(insert(notes).values(text="late"))
        release.set()
        await holder
        # The timeout names who held the turn and where it stood, to find a transaction kept open.
        [report] = [e for e in logs if e["event"] == "sqlite_writer_timeout"]
        assert report["holder"] == "slow-holder"
        assert any("keep_a_transaction_open" in frame for frame in report["holder_at"])
        assert report["statement"] == "INSERT"
        assert report["held_for_s"] >= 0.2
        assert report["others_writing"] == []  # the holder's own transaction is not listed twice
        # The queue is free again once the first writer committed.
        async with engine.begin() as conn:
            await conn.execute(insert(notes).values(text="after"))
    finally:
        await engine.dispose()


async def test_the_timeout_report_names_a_transaction_that_holds_the_lock_outside_the_queue(tmp_path: Path) -> None:
    """The turn holder itself can be stuck in SQLite's busy handler when another connection of the
    process holds SQLite's lock outside the queue (here: a write sent on the bare driver, past
    SQLAlchemy's hooks). The report then lists that connection's task and where it stands."""
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'bypass.db'}", poolclass=NullPool, connect_args={"timeout": 2.0}
    )
    WriterQueue(timeout=0.3).install(engine)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        release = asyncio.Event()
        written = asyncio.Event()

        async def write_past_the_queue() -> None:
            async with engine.connect() as bypass:
                await bypass.execute(insert(notes).values(text="queued"))  # takes the turn
                await bypass.commit()  # and ends it
                driver = (await bypass.get_raw_connection()).driver_connection
                assert driver is not None
                await driver.execute("INSERT INTO notes (text) VALUES ('bypass')")  # SQLite's lock, no turn
                written.set()
                await release.wait()
                await driver.rollback()

        async def queued_write(text: str) -> None:
            async with engine.begin() as conn:
                await conn.execute(insert(notes).values(text=text))

        bypass = asyncio.create_task(write_past_the_queue(), name="past-the-queue")
        await written.wait()
        holder = asyncio.create_task(queued_write("holder"), name="turn-holder")  # waits inside SQLite
        await _until_a_writer_holds_the_turn(engine)
        with capture_logs() as logs, pytest.raises(OperationalError, match="database is locked"):
            await queued_write("late")
        release.set()
        await bypass
        await holder  # SQLite's lock is free again: the holder's insert goes through
        [report] = [e for e in logs if e["event"] == "sqlite_writer_timeout"]
        assert report["holder"] == "turn-holder"
        [other] = report["others_writing"]
        assert other["task"] == "past-the-queue"
        assert any("write_past_the_queue" in frame for frame in other["at"])
    finally:
        await engine.dispose()
