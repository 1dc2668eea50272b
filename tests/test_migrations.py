"""Migrations run on all three backends, round-trip, and match the models exactly."""

from __future__ import annotations

import os
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import XDIST_WORKER, Backend
from wardrobe.core.db import create_engine
from wardrobe.migrations import runner
from wardrobe.models import Base
from wardrobe.settings import Environment, Settings

POSTGRES_SERVER = os.environ.get("WARDROBE_TEST_POSTGRES_SERVER", "postgresql+asyncpg://postgres@127.0.0.1:5432")
# One database per xdist worker, as for MariaDB (tests/conftest.py).
POSTGRES_DB = "wardrobe_migrations_test" + (f"_{XDIST_WORKER}" if XDIST_WORKER else "")


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrated_schema_matches_the_models(backend: Backend) -> None:
    engine = create_engine(Settings(env=Environment.TEST), database_url=backend.database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
        assert diff == []
    finally:
        await engine.dispose()


@pytest.fixture
async def postgres_url() -> str:
    server = create_async_engine(POSTGRES_SERVER + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {POSTGRES_DB}"))
            await conn.execute(text(f"CREATE DATABASE {POSTGRES_DB}"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_SERVER} is required for the migration test: {exc!r}")
    finally:
        await server.dispose()
    return f"{POSTGRES_SERVER}/{POSTGRES_DB}"


async def test_migrations_round_trip_on_postgresql(postgres_url: str) -> None:
    await _round_trip(postgres_url)


async def test_migrations_round_trip_on_sqlite(tmp_path: Any) -> None:
    await _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}")


async def _round_trip(url: str) -> None:
    engine = create_engine(Settings(env=Environment.TEST), database_url=url)
    try:
        await runner.upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            assert {"users", "auth_sessions", "refresh_tokens", "sms_codes"} <= await conn.run_sync(_tables)
        await runner.downgrade(engine, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        await runner.upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()
