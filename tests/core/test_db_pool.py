"""The pool tests a connection before use only when it sat idle: one that the server dropped while
idle is replaced before the request uses it, and a busy pool pays no ping per checkout."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.conftest import Api
from tests.fixtures.auth import data, sms_login
from wardrobe.core.db import create_engine, create_session_factory, unit_of_work
from wardrobe.models import SchedulerRun

pytestmark = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)


async def _kill_pooled_connections(api: Api) -> int:
    """What a server restart or its wait_timeout does to the pool's idle connections."""
    url = make_url(api.settings.database_url)
    killer = create_async_engine(url, poolclass=NullPool)
    try:
        async with killer.connect() as conn:
            ids = (
                await conn.execute(
                    text("SELECT id FROM information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID()"),
                    {"db": url.database},
                )
            ).scalars()
            killed = 0
            for connection_id in ids:
                await conn.execute(text(f"KILL CONNECTION {int(connection_id)}"))
                killed += 1
    finally:
        await killer.dispose()
    return killed


def _count_pings(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    dialect = api.infra.engine.sync_engine.dialect
    pings = [0]
    real = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings[0] += 1
        return real(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


async def test_a_connection_dropped_while_idle_is_replaced_before_use(
    api_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any gap between two requests counts as idle here.
    api: Api = await api_factory(db_pool_ping_after_idle_seconds=0.000001)
    user = await sms_login(api.client)
    data(await api.client.get("/api/v1/users/me", headers=user.headers))
    pings = _count_pings(api, monkeypatch)
    assert await _kill_pooled_connections(api) >= 1

    me = data(await api.client.get("/api/v1/users/me", headers=user.headers))
    assert me["id"] == user.user["id"]
    assert pings[0] >= 1


async def test_a_busy_pool_is_not_pinged_and_a_dropped_connection_fails_one_request_only(
    api_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api: Api = await api_factory(db_pool_ping_after_idle_seconds=3600)
    user = await sms_login(api.client)
    pings = _count_pings(api, monkeypatch)
    for _ in range(5):
        data(await api.client.get("/api/v1/users/me", headers=user.headers))
    assert pings[0] == 0

    # Without the ping, the dead connection is found by the request's first statement: that
    # request gets the 503 any request caught by a restart gets, and the pool is renewed for the next.
    assert await _kill_pooled_connections(api) >= 1
    failed = await api.client.get("/api/v1/users/me", headers=user.headers)
    assert failed.status_code == 503, failed.text
    assert failed.json()["code"] == "DEPENDENCY_UNAVAILABLE"
    assert data(await api.client.get("/api/v1/users/me", headers=user.headers))["id"] == user.user["id"]


async def _session_rollbacks(conn: Any) -> int:
    row = (await conn.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'"))).one()
    return int(row[1])


async def test_a_committed_connection_goes_back_without_a_rollback_and_an_open_one_is_rolled_back(
    api_factory: Any,
) -> None:
    api: Api = await api_factory()
    # One connection, so every checkout below is the same server session and its counters add up.
    engine = create_engine(api.settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
    factory = create_session_factory(engine)
    try:
        async with engine.connect() as conn:
            before = await _session_rollbacks(conn)
            await conn.commit()
        for n in range(5):
            async with unit_of_work(factory) as db:
                db.add(SchedulerRun(job=f"pool-probe-{n}", runs=0))
        async with engine.connect() as conn:
            assert await _session_rollbacks(conn) == before
            # A transaction SQLAlchemy does not know of (written on the driver's own cursor)...
            raw = await conn.get_raw_connection()
            assert raw.driver_connection is not None
            cursor = raw.driver_connection.cursor()
            await cursor.execute("INSERT INTO scheduler_runs (job, runs) VALUES ('pool-probe-open', 0)")
        # ...is still rolled back when the connection is returned.
        async with engine.connect() as conn:
            assert await _session_rollbacks(conn) == before + 1
            jobs = set((await conn.execute(text("SELECT job FROM scheduler_runs"))).scalars())
            await conn.commit()
        assert {f"pool-probe-{n}" for n in range(5)} <= jobs
        assert "pool-probe-open" not in jobs
    finally:
        await engine.dispose()
