"""The floor under every hot path: what one database round trip costs this process in CPU, by the
layer it goes through, and what the task creation's unit of work costs as it is written.

In-process, on MariaDB (database ``wardrobe_bench_rt_floor``, re-created; dropped at the end), one
connection, ``--rounds`` round trips per layer after a warm-up, CPU time of this process
(``time.process_time``), so MariaDB's own CPU is not counted:

- ``asyncmy``: the driver's cursor, a prepared SQL string (the floor of any Python client here);
- ``Core``: the same SELECT by primary key through SQLAlchemy Core on an ``AsyncConnection``;
- ``ORM execute``: the same statement through ``AsyncSession.execute`` (what ``session.execute(update(…))``
  and ``session.scalar(select(…))`` cost);
- ``ORM entity``: loading one ``Task`` entity by primary key;
- ``ORM insert``: ``session.add(Task(...))`` + ``flush`` (the task row of a creation);
- ``COMMIT`` after one insert (the ORM's commit, the round trip and its bookkeeping).

    .venv/bin/python bench/round_trips.py [--rounds 2000]

Figures and what they mean are in bench/README.md ("The floor: one round trip").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import select, text

from wardrobe.core.db import create_engine, create_session_factory
from wardrobe.models import Base, Task
from wardrobe.settings import Settings

DATABASE = "wardrobe_bench_rt_floor"
SERVER = "mysql+asyncmy://root@127.0.0.1:3306"


async def measure(name: str, rounds: int, once: Callable[[], Awaitable[object]]) -> tuple[str, float]:
    for _ in range(min(200, rounds)):  # warm-up: statement caches, the connection, the allocator
        await once()
    started = time.process_time()
    for _ in range(rounds):
        await once()
    return name, (time.process_time() - started) / rounds * 1e6


def _task(user_id: int) -> Task:
    return Task(
        public_id=uuid.uuid4().hex,
        user_id=user_id,
        feature_key="floor",
        pipeline_schema_id=1,
        status="queued",
        progress=0,
        inputs={"key": "value"},
        outputs=[],
        quota_cost=1,
        request_hash="0" * 64,
    )


async def main(rounds: int) -> None:
    root = create_engine(Settings(database_url=f"{SERVER}/mysql"))
    async with root.connect() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE}"))
        await conn.execute(text(f"CREATE DATABASE {DATABASE}"))
    await root.dispose()
    settings = Settings(database_url=f"{SERVER}/{DATABASE}", db_pool_size=1, db_max_overflow=0)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        async with sessions() as db:
            db.add(_task(1))
            await db.commit()
        results = await _layers(engine, sessions, rounds)
    finally:
        async with engine.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE}"))
        await engine.dispose()
    print(f"| layer | CPU µs per round trip ({rounds:,} rounds) |")
    print("| --- | ---: |")
    for name, micros in results:
        print(f"| {name} | {micros:,.0f} |")


async def _layers(engine: object, sessions: object, rounds: int) -> list[tuple[str, float]]:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    assert isinstance(engine, AsyncEngine)
    assert isinstance(sessions, async_sessionmaker)
    by_id = select(Task.id, Task.status).where(Task.id == 1)
    results = []
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None

        async def driver_select() -> object:
            async with driver.cursor() as cursor:
                await cursor.execute("SELECT id, status FROM tasks WHERE id = %s", (1,))
                return await cursor.fetchall()

        results.append(await measure("asyncmy cursor, SELECT by primary key", rounds, driver_select))
        results.append(
            await measure("SQLAlchemy Core on AsyncConnection", rounds, lambda: conn.execute(by_id, {"id_1": 1}))
        )
        await conn.rollback()
    session: AsyncSession = sessions()
    try:
        results.append(await measure("ORM AsyncSession.execute, same SELECT", rounds, lambda: session.execute(by_id)))
        results.append(
            await measure("ORM entity by primary key", rounds, lambda: session.get(Task, 1, populate_existing=True))
        )

        async def insert() -> None:
            session.add(_task(2))
            await session.flush()

        results.append(await measure("ORM insert (add + flush) of a task row", rounds, insert))
        await session.rollback()

        async def insert_commit() -> None:
            session.add(_task(3))
            await session.commit()

        results.append(await measure("ORM insert + COMMIT", max(200, rounds // 4), insert_commit))
    finally:
        await session.close()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    logging.getLogger("asyncmy").setLevel(logging.ERROR)  # create_all's notes on key names
    asyncio.run(main(parser.parse_args().rounds))
