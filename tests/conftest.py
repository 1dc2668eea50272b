"""Test harness: every integration test runs on SQLite (embedded) and on MariaDB + Redis.

Backends come from WARDROBE_TEST_BACKENDS (default "sqlite,mariadb"). A backend that is asked
for and not reachable fails the run; nothing is ever skipped.
"""

from __future__ import annotations

import gc
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from wardrobe.app import create_app
from wardrobe.core.db import create_engine
from wardrobe.migrations import runner
from wardrobe.models import Base
from wardrobe.settings import Environment, Settings
from wardrobe.wiring import Infra

pytest_plugins = [
    "tests.peers.fixtures",
    "tests.peers.wechatpay_fixtures",
    "tests.peers.alipay_fixtures",
    "tests.peers.runninghub_fixtures",
    "tests.peers.s3_fixtures",
]

BACKENDS = [b.strip() for b in os.environ.get("WARDROBE_TEST_BACKENDS", "sqlite,mariadb").split(",") if b.strip()]
MARIADB_SERVER = os.environ.get("WARDROBE_TEST_MARIADB_SERVER", "mysql+asyncmy://root@127.0.0.1:3306")
# Under pytest-xdist (`python3 dev.py test`) the workers run tests at the same time, each truncating
# every table after each test: each has a database of its own (wardrobe_test_gw0, _gw1, ...). Redis
# needs no such split: each test's keys and channels carry a prefix of their own (api_factory).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
MARIADB_DB = os.environ.get("WARDROBE_TEST_MARIADB_DB", "wardrobe_test") + (f"_{XDIST_WORKER}" if XDIST_WORKER else "")
REDIS_URL = os.environ.get("WARDROBE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Take what is alive once the suite is collected out of the garbage collector's sight: the
    modules every test imports (the app, SQLAlchemy, schemathesis, boto, OpenCV, ...), some 400,000
    objects that every full collection walked again. Each ``backend`` teardown runs one (see there),
    and those took about a third of the suite's time. Frozen objects are still freed when their
    last reference goes; only a reference cycle among them would stay."""
    gc.collect()
    gc.freeze()


@dataclass
class Backend:
    name: str
    database_url: str
    redis_url: str


async def _prepare_mariadb() -> str:
    server = create_async_engine(MARIADB_SERVER + "/", isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{MARIADB_DB}`"))
            await conn.execute(text(f"CREATE DATABASE `{MARIADB_DB}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    except Exception as exc:
        pytest.fail(f"MariaDB at {MARIADB_SERVER} is required for the mariadb backend: {exc!r}")
    finally:
        await server.dispose()
    return f"{MARIADB_SERVER}/{MARIADB_DB}?charset=utf8mb4"


async def _check_redis() -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        pytest.fail(f"Redis at {REDIS_URL} is required for the mariadb backend: {exc!r}")
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
async def migrated_backends(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Backend]:
    """Each backend created empty and migrated once per run (which also tests the migrations)."""
    out: dict[str, Backend] = {}
    base_settings = Settings(env=Environment.TEST)
    for name in BACKENDS:
        if name == "sqlite":
            path: Path = tmp_path_factory.mktemp("db") / "wardrobe.db"
            backend = Backend(name, f"sqlite+aiosqlite:///{path}", "")
        elif name == "mariadb":
            await _check_redis()
            backend = Backend(name, await _prepare_mariadb(), REDIS_URL)
        else:
            pytest.fail(f"unknown test backend {name!r}")
        engine = create_engine(base_settings, database_url=backend.database_url)
        try:
            await runner.upgrade(engine)
        finally:
            await engine.dispose()
        out[name] = backend
    return out


def make_settings(backend: Backend, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": Environment.TEST,
        "database_url": backend.database_url,
        "redis_url": backend.redis_url,
        "redis_key_prefix": f"wt-{uuid.uuid4().hex[:12]}",
        "auto_migrate": False,
        "seed_demo_data": False,
        "sms_debug_codes": True,
        "log_json": True,
        # Tests make many requests from one address within a minute; the edge limits are tested
        # with small windows of their own (tests/core/test_edge_limits.py).
        "rate_limit_per_ip": "100000/minute",
        "rate_limit_per_user": "100000/minute",
        "rate_limit_auth": "100000/minute",
        "rate_limit_task_create": "100000/minute",
        "rate_limit_write": "100000/minute",
        "db_pool_size": 20,
        "shutdown_grace_seconds": 3,
        "storage_local_root": Path(tempfile.mkdtemp(prefix="wardrobe-objects-")),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def _truncate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if conn.dialect.name == "mysql":
            await conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())
        if conn.dialect.name == "mysql":
            await conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))


async def _purge_redis(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, migrated_backends: dict[str, Backend]) -> AsyncIterator[Backend]:
    chosen = migrated_backends[request.param]
    yield chosen
    settings = Settings(env=Environment.TEST, database_url=chosen.database_url)
    engine = create_engine(settings)
    # A run interrupted at app shutdown can leave an aiosqlite connection unreferenced but not yet
    # finalised; only the garbage collector closes it (and so ends its transaction). Collect first
    # so that the truncation never waits out SQLite's busy timeout behind it.
    gc.collect()
    try:
        await _truncate(engine)
    finally:
        await engine.dispose()


@dataclass
class Api:
    """A running app on one backend, with a client that speaks to it in process."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def infra(self) -> Infra:
        infra: Infra = self.app.state.infra
        return infra


async def start_api(settings: Settings) -> tuple[FastAPI, LifespanManager, httpx.AsyncClient]:
    app = create_app(settings)
    manager = LifespanManager(app, startup_timeout=30, shutdown_timeout=30)
    await manager.__aenter__()
    transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.7", 40000))
    client = httpx.AsyncClient(transport=transport, base_url="http://wardrobe.test")
    return app, manager, client


@pytest.fixture
async def api_factory(backend: Backend) -> AsyncIterator[object]:
    """Start any number of app instances on the same backend (they share DB and Redis)."""
    started: list[tuple[LifespanManager, httpx.AsyncClient]] = []
    prefix = f"wt-{uuid.uuid4().hex[:12]}"

    async def factory(**overrides: object) -> Api:
        overrides.setdefault("redis_key_prefix", prefix)
        settings = make_settings(backend, **overrides)
        app, manager, client = await start_api(settings)
        started.append((manager, client))
        return Api(app=app, client=client, settings=settings)

    yield factory
    for manager, client in started:
        await client.aclose()
        await manager.__aexit__(None, None, None)
    if backend.redis_url:
        await _purge_redis(prefix)


@pytest.fixture
async def api(api_factory: object) -> Api:
    result: Api = await api_factory()  # type: ignore[operator]
    return result
