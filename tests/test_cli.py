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


def test_create_admin_tells_how_to_enrol_where_totp_is_required(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    args = ["admin", "create-user", "--password", "admin-pass-1", "--role"]
    quiet = runner.invoke(app, [*args, "admin", "--phone", "13700000003"])
    assert quiet.exit_code == 0, quiet.output
    assert "TOTP" not in quiet.output  # not required outside production by default
    monkeypatch.setenv("WARDROBE_ADMIN_TOTP_REQUIRED", "true")
    get_settings.cache_clear()
    told = runner.invoke(app, [*args, "admin", "--phone", "13700000004"])
    assert told.exit_code == 0, told.output
    assert "TOTP_ENROLMENT_REQUIRED" in told.output
    assert "/api/v1/auth/totp/setup" in told.output
    operator = runner.invoke(app, [*args, "operator", "--phone", "13700000005"])
    assert "TOTP" not in operator.output


def test_reset_totp_ends_it_and_every_session_with_an_audit_record(fresh_db: str) -> None:
    from wardrobe.core.db import unit_of_work
    from wardrobe.models import AuditLog, AuthSession, UserTotp
    from wardrobe.models.base import utcnow

    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    create = ["admin", "create-user", "--phone", "13700000006", "--password", "good-pass-1", "--role", "operator"]
    assert runner.invoke(app, create).exit_code == 0
    reset = ["admin", "reset-totp", "--phone", "13700000006", "--reason", "phone lost on a trip"]
    refused = runner.invoke(app, reset)
    assert (refused.exit_code, "CONFLICT" in refused.output) == (1, True)  # no TOTP to reset

    async def with_totp() -> int:
        engine = create_engine(get_settings())
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                user = await session.scalar(select(User).where(User.phone == "13700000006"))
                assert user is not None
                user.totp_enabled_at = utcnow()
                session.add(
                    UserTotp(
                        user_id=user.id,
                        secret_wrapped_key="w",
                        secret_key_ref="local:1",
                        secret_nonce=b"n",
                        secret_ciphertext=b"c",
                    )
                )
                session.add(AuthSession(id="a" * 32, user_id=user.id, method="password", mfa=True))
                return user.id
        finally:
            await engine.dispose()

    async def state(user_id: int) -> tuple[object, object, object, list[tuple[str, str | None]]]:
        engine = create_engine(get_settings())
        try:
            async with create_session_factory(engine)() as session:
                user = await session.get(User, user_id)
                assert user is not None
                audits = await session.scalars(select(AuditLog).where(AuditLog.action == "user.totp_reset"))
                return (
                    user.totp_enabled_at,
                    await session.get(UserTotp, user_id),
                    await session.scalar(select(AuthSession.revoked_at).where(AuthSession.id == "a" * 32)),
                    [(a.target_id, a.reason) for a in audits],
                )
        finally:
            await engine.dispose()

    user_id = asyncio.run(with_totp())
    done = runner.invoke(app, reset)
    assert done.exit_code == 0, done.output
    assert f"TOTP of user {user_id} reset; 1 sessions ended" in done.output
    enabled_at, secret, revoked_at, audits = asyncio.run(state(user_id))
    assert (enabled_at, secret) == (None, None)
    assert revoked_at is not None
    assert audits == [(str(user_id), "phone lost on a trip")]
    unknown = runner.invoke(app, ["admin", "reset-totp", "--phone", "13700000099"])
    assert (unknown.exit_code, "NOT_FOUND" in unknown.output) == (1, True)
    assert runner.invoke(app, ["admin", "reset-totp", "--phone", "123"]).exit_code == 2
