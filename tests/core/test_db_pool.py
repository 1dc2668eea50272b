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
