"""F4: when MariaDB or Redis goes away, clients get 503 DEPENDENCY_UNAVAILABLE (never a 500 or a
hang), nothing half-done is kept, and the service recovers by itself when the dependency returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import Api, Backend
from tests.fixtures.auth import data, new_phone, sms_login
from tests.fixtures.gate import TcpGate


@pytest.fixture
async def gates(backend: Backend) -> AsyncIterator[tuple[TcpGate, TcpGate]]:
    db_url, redis_url = make_url(backend.database_url), make_url(backend.redis_url)
    db = TcpGate(db_url.host or "127.0.0.1", db_url.port or 3306)
    redis = TcpGate(redis_url.host or "127.0.0.1", redis_url.port or 6379)
    await db.open()
    await redis.open()
    yield db, redis
    await db.close()
    await redis.close()


def _unavailable(resp: Any) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.json()["code"] == "DEPENDENCY_UNAVAILABLE"
    assert int(resp.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_lost_database_and_redis_give_503_and_the_service_recovers(
    backend: Backend, api_factory: Any, gates: tuple[TcpGate, TcpGate]
) -> None:
    db_gate, redis_gate = gates
    db_url = make_url(backend.database_url).set(host="127.0.0.1", port=db_gate.port)
    redis_url = make_url(backend.redis_url).set(host="127.0.0.1", port=redis_gate.port)
    api: Api = await api_factory(
        database_url=db_url.render_as_string(hide_password=False),
        redis_url=redis_url.render_as_string(hide_password=False),
        redis_pool_timeout=1.0,
        db_pool_timeout=2.0,
    )
    user = await sms_login(api.client)
    me = data(await api.client.get("/api/v1/users/me", headers=user.headers))

    await db_gate.cut()
    _unavailable(await api.client.get("/api/v1/users/me", headers=user.headers))
    _unavailable(await api.client.patch("/api/v1/users/me", json={"nickname": "lost"}, headers=user.headers))
    ready = await api.client.get("/health/ready")
    assert ready.json()["code"] == "DEPENDENCY_UNAVAILABLE"
    assert ready.json()["data"]["db"]["status"] == "down"
    assert ready.json()["data"]["redis"]["status"] == "ok"

    await db_gate.open()
    # The first request after the database returns is served: the pool replaces dead connections.
    again = data(await api.client.get("/api/v1/users/me", headers=user.headers))
    assert again["nickname"] == me["nickname"]  # the write during the outage left nothing

    await redis_gate.cut()
    # Login and SMS limits cannot be checked: refused (fail closed). Reads go on (fail open).
    _unavailable(await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone(), "purpose": "login"}))
    data(await api.client.get("/api/v1/users/me", headers=user.headers))
    ready = (await api.client.get("/health/ready")).json()["data"]
    assert ready["redis"]["status"] == "down"
    assert ready["rate_limits"]["status"] == "degraded"

    await redis_gate.open()
    data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone(), "purpose": "login"}))
    assert (await api.client.get("/health/ready")).status_code == 200
    metrics = (await api.client.get("/metrics")).text
    assert 'wardrobe_dependency_failures_total{dependency="database"}' in metrics
