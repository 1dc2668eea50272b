"""The command line: migrate, seed and admin create-user on a fresh SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from wardrobe.cli import app
from wardrobe.core.db import create_engine, create_session_factory
from wardrobe.models import User
from wardrobe.settings import get_settings


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("WARDROBE_DATABASE_URL", url)
    monkeypatch.setenv("WARDROBE_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _users(url: str) -> list[tuple[str | None, str]]:
    async def read() -> list[tuple[str | None, str]]:
        engine = create_engine(get_settings(), database_url=url)
        try:
            async with create_session_factory(engine)() as session:
                return [(u.phone, u.role) for u in await session.scalars(select(User))]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_migrate_seed_and_create_user(fresh_db: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["seed"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["seed"]).exit_code == 0  # idempotent
    result = runner.invoke(
        app,
        ["admin", "create-user", "--phone", "13700000001", "--password", "admin-pass-1", "--role", "admin"],
    )
    assert result.exit_code == 0, result.output
    users = _users(fresh_db)
    assert ("13700000001", "admin") in users
    assert ("13800000000", "operator") in users
    assert len(users) == 2


def test_create_user_rejects_bad_input_and_duplicates(fresh_db: str) -> None:
    runner = CliRunner()
    runner.invoke(app, ["migrate"])
    result = runner.invoke(app, ["admin", "create-user", "--phone", "123", "--password", "short", "--role", "king"])
    assert result.exit_code == 2
    for field in ("phone", "password", "role"):
        assert field in result.output
    ok = ["admin", "create-user", "--phone", "13700000002", "--password", "good-pass-1"]
    assert runner.invoke(app, ok).exit_code == 0
    dup = runner.invoke(app, ok)
    assert dup.exit_code == 1
    assert "CONFLICT" in dup.output
    assert len(_users(fresh_db)) == 1


def test_storage_gc_reports_a_dry_run_then_deletes_orphans(
    fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import time

    root = tmp_path / "objects"
    monkeypatch.setenv("WARDROBE_STORAGE_LOCAL_ROOT", str(root))
    get_settings.cache_clear()
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    orphan = root / "uploads" / "5" / "2026" / "01" / "old.png"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x" * 100)
    ancient = time.time() - 30 * 86400
    os.utime(orphan, (ancient, ancient))
    young = root / "uploads" / "5" / "2026" / "11" / "new.png"
    young.parent.mkdir(parents=True)
    young.write_bytes(b"y" * 10)

    dry = runner.invoke(app, ["storage", "gc", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 objects, 100 bytes" in dry.output
    assert orphan.exists()
    done = runner.invoke(app, ["storage", "gc"])
    assert done.exit_code == 0, done.output
    assert "deleted 1 objects, 100 bytes in 1 calls; kept 0 referenced, 1 young" in done.output
    assert not orphan.exists()
    assert young.exists()
