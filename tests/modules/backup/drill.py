"""Databases for the backup tests: a migrated SQLite file, or a MariaDB database of its own on the
test server reached as a user with a password (so the password's path to the client programs is
exercised), filled through the real quota services."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.conftest import (
    BACKENDS,
    MARIADB_SERVER,
    REDIS_URL,
    XDIST_WORKER,
    Backend,
    _purge_redis,
    make_settings,
    start_api,
)
from tests.fixtures.auth import data, sms_login
from wardrobe.core.db import create_engine, create_session_factory, unit_of_work
from wardrobe.migrations import runner
from wardrobe.models import LedgerKind, User
from wardrobe.modules.backup.snapshot import Snapshot, measure
from wardrobe.modules.billing import quota
from wardrobe.modules.users import service as users_service
from wardrobe.settings import Environment, Settings, get_settings

HOUR = timedelta(hours=1)
# Every character an option file or a shell could trip on.
DRILL_USER = "wardrobe_backup"
DRILL_PASSWORD = 'Dr1ll #pw"\\ x;$(id)'
SAMPLED_TABLES = ("users", "quota_accounts", "quota_ledger", "quota_holds", "alembic_version")


@dataclass
class DrillDb:
    kind: str  # "sqlite" | "mysql"
    url: str  # with the password, for the service's settings
    path: Path | None = None  # SQLite file

    @property
    def sa_url(self) -> URL:
        return make_url(self.url)


def archive_from(output: str) -> Path:
    """The archive path `backup create` printed ("<path> (<n> bytes, ...)")."""
    found = re.search(r"^(\S+\.tar) \(\d+ bytes", output, re.MULTILINE)
    assert found, output
    return Path(found.group(1))


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _server_url() -> URL:
    return make_url(MARIADB_SERVER + "/")


async def _admin(statements: list[tuple[str, dict[str, Any]]]) -> None:
    engine = create_async_engine(_server_url(), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for sql, params in statements:
                await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


def _mariadb_db() -> Iterator[DrillDb]:
    name = f"wardrobe_backup_{XDIST_WORKER or 'main'}_{secrets.token_hex(4)}"
    asyncio.run(
        _admin(
            [
                (f"CREATE USER IF NOT EXISTS '{DRILL_USER}'@'%' IDENTIFIED BY :pw", {"pw": DRILL_PASSWORD}),
                (f"ALTER USER '{DRILL_USER}'@'%' IDENTIFIED BY :pw", {"pw": DRILL_PASSWORD}),
                # What the backup account needs: its database, and the scratch databases of verify.
                (f"GRANT ALL ON `{name}`.* TO '{DRILL_USER}'@'%'", {}),
                (f"GRANT ALL ON `wardrobe\\_verify\\_%`.* TO '{DRILL_USER}'@'%'", {}),
                (f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", {}),
            ]
        )
    )
    url = _server_url().set(username=DRILL_USER, password=DRILL_PASSWORD, database=name, query={"charset": "utf8mb4"})
    try:
        yield DrillDb("mysql", url.render_as_string(hide_password=False))
    finally:
        asyncio.run(_admin([(f"DROP DATABASE IF EXISTS `{name}`", {})]))


@pytest.fixture(params=BACKENDS)
def drill_db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DrillDb]:
    """An empty migrated database, and the environment of the `wardrobe` commands pointed at it
    (archives under tmp_path/backups, a fresh encryption key)."""
    if request.param == "sqlite":
        path = tmp_path / "live.db"
        databases: Iterator[DrillDb] = iter([DrillDb("sqlite", f"sqlite+aiosqlite:///{path}", path)])
    else:
        databases = _mariadb_db()
    db = next(databases)
    asyncio.run(_migrate(db.url))
    monkeypatch.setenv("WARDROBE_DATABASE_URL", db.url)
    monkeypatch.setenv("WARDROBE_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("WARDROBE_BACKUP_ENCRYPTION_KEY", new_key())
    monkeypatch.setenv("WARDROBE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WARDROBE_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    try:
        yield db
    finally:
        get_settings.cache_clear()
        next(databases, None)


async def _migrate(url: str) -> None:
    engine = create_engine(Settings(env=Environment.TEST), database_url=url)
    try:
        await runner.upgrade(engine)
    finally:
        await engine.dispose()


async def fill(url: str, users: int = 4) -> list[int]:
    """Users with grants and a referral reward, tasks' holds confirmed, cancelled and left open, an
    admin adjustment and a membership expiry: every kind of ledger row the invariants add up."""
    engine = create_engine(Settings(env=Environment.TEST), database_url=url)
    factory = create_session_factory(engine)
    policy = users_service.SignupPolicy(free_grant=10, referral_reward=5)
    ids: list[int] = []
    try:
        for n in range(users):
            async with unit_of_work(factory) as db:
                referrer = await db.get(User, ids[0]) if ids else None
                user = await users_service.create_user(db, policy=policy, phone=f"1390000{n:04d}", referrer=referrer)
                assert user is not None
                await quota.credit(db, user.id, 20 + n, kind=LedgerKind.PURCHASE, ref=f"order-{user.id}")
                ids.append(user.id)
        for uid in ids:
            async with unit_of_work(factory) as db:
                await quota.reserve(db, uid, 3, ref=f"task-{uid}-a", ttl=HOUR)
            async with unit_of_work(factory) as db:
                await quota.confirm(db, f"task-{uid}-a")
            async with unit_of_work(factory) as db:
                await quota.reserve(db, uid, 2, ref=f"task-{uid}-b", ttl=HOUR)
                await quota.cancel(db, f"task-{uid}-b")
            async with unit_of_work(factory) as db:
                await quota.reserve(db, uid, 1, ref=f"task-{uid}-c", ttl=HOUR)  # still running
        async with unit_of_work(factory) as db:
            await quota.expire(db, ids[0], 4, ref=f"membership:{ids[0]}:1", note="membership ended")
            await quota.credit(db, ids[-1], -2, kind=LedgerKind.ADMIN_ADJUSTMENT, ref="adj-1", note="drill")
    finally:
        await engine.dispose()
    return ids


def plain_engine(url: str) -> AsyncEngine:
    return create_async_engine(url)


async def state(url: str) -> tuple[Snapshot, dict[str, list[tuple[Any, ...]]]]:
    """The database measured as `backup verify` does, and every row of the money tables."""
    engine = plain_engine(url)
    try:
        found = await measure(engine)
        rows: dict[str, list[tuple[Any, ...]]] = {}
        async with engine.connect() as conn:
            for table in SAMPLED_TABLES:
                result = await conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))  # noqa: S608 - constant names
                rows[table] = [tuple(row) for row in result]
        return found, rows
    finally:
        await engine.dispose()


async def serve_and_read_quota(db: DrillDb, phone: str) -> tuple[int, dict[str, Any]]:
    """Start the app on the database, and as the user of ``phone`` (logged in by SMS) read the
    quota: /health/ready's status and the quota answer."""
    settings = make_settings(Backend(db.kind, db.url, REDIS_URL if db.kind == "mysql" else ""))
    _, manager, client = await start_api(settings)
    try:
        ready = await client.get("/health/ready")
        session = await sms_login(client, phone)
        quota_now = data(await client.get("/api/v1/billing/quota", headers=session.headers))
        return ready.status_code, quota_now
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)
        if settings.redis_url:
            await _purge_redis(settings.redis_key_prefix)


def drop(db: DrillDb) -> None:
    """Lose the database, as a disaster would."""
    if db.path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db.path) + suffix).unlink(missing_ok=True)
        return
    asyncio.run(_admin([(f"DROP DATABASE `{db.sa_url.database}`", {})]))


async def execute(url: str, sql: str, **params: Any) -> None:
    engine = plain_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()
