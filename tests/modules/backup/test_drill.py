"""The restore drill: data in through the quota services, backup, the database lost, restore; the
restored database has the same rows, counts and ledger, and the service's migrations accept it."""

from __future__ import annotations

import asyncio
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from structlog.testing import capture_logs
from typer.testing import CliRunner

from tests.modules.backup.drill import (
    DRILL_PASSWORD,
    DrillDb,
    archive_from,
    drill_db,
    drop,
    execute,
    fill,
    serve_and_read_quota,
    state,
)
from wardrobe.cli import app
from wardrobe.migrations.runner import alembic_config
from wardrobe.modules.backup.archive import read_manifest
from wardrobe.settings import get_settings

__all__ = ["drill_db"]

# The newest migration: what a backup of a freshly migrated database records.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_restore_drill(drill_db: DrillDb, tmp_path: Path) -> None:
    runner = CliRunner()
    ids = asyncio.run(fill(drill_db.url))
    before, rows_before = asyncio.run(state(drill_db.url))
    assert before.violations == []
    assert before.ledger.accounts == len(ids)
    assert before.ledger.held_total == len(ids)

    created = runner.invoke(app, ["backup", "create"])
    assert created.exit_code == 0, created.output
    archive = archive_from(created.output)
    assert archive.parent == tmp_path / "backups"
    manifest = read_manifest(archive)
    assert manifest.database == drill_db.kind
    assert manifest.alembic_revision == HEAD
    assert manifest.row_counts == before.row_counts
    assert manifest.ledger == before.ledger
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["manifest.json", manifest.payload_name]

    drop(drill_db)

    refused = runner.invoke(app, ["backup", "restore", str(archive)])
    assert refused.exit_code == 2
    assert "--yes" in refused.output

    restored = runner.invoke(app, ["backup", "restore", str(archive), "--yes"])
    assert restored.exit_code == 0, restored.output
    assert f"restored at revision {HEAD}" in restored.output
    after, rows_after = asyncio.run(state(drill_db.url))
    assert after.row_counts == before.row_counts
    assert after.ledger == before.ledger
    assert after.violations == []
    assert rows_after == rows_before

    # The service takes the restored database as it is: migrating is a no-op at the same head, the
    # app starts on it, and a user logs in and finds the quota the ledger says.
    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert asyncio.run(state(drill_db.url))[0].alembic_revision == HEAD
    account = next(row for row in rows_before["quota_accounts"] if row[0] == ids[1])
    ready, quota_now = asyncio.run(serve_and_read_quota(drill_db, "13900000001"))
    assert ready == 200
    assert (quota_now["balance"], quota_now["held"]) == (account[1], account[2])
    assert DRILL_PASSWORD not in created.output + restored.output


def test_restore_refuses_the_production_database_without_i_know(
    drill_db: DrillDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    asyncio.run(fill(drill_db.url, users=1))
    archive = archive_from(runner.invoke(app, ["backup", "create"]).output)
    monkeypatch.setenv("WARDROBE_ENV", "production")
    get_settings.cache_clear()
    # Production settings refuse to load with dev defaults: the guard is read before them.
    monkeypatch.setattr("wardrobe.settings.Settings.production_problems", lambda self: [])
    refused = runner.invoke(app, ["backup", "restore", str(archive), "--yes"])
    assert refused.exit_code == 2
    assert "--i-know" in refused.output


@pytest.mark.parametrize("drill_db", ["mariadb"], indirect=True)
def test_the_password_is_never_on_a_command_line(
    drill_db: DrillDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every client program started for create, verify and restore is recorded: the password is
    in none of their arguments nor environments (WARDROBE_DATABASE_URL holds it in ours), only in
    a 0600 file that is gone afterwards."""
    started: list[dict[str, Any]] = []
    real_popen = subprocess.Popen

    def recording_popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # subprocess.Popen itself is replaced for this test: only the client programs are recorded.
        if Path(argv[0]).name not in ("mariadb", "mariadb-dump", "mysql", "mysqldump"):
            return real_popen(argv, **kwargs)
        defaults = Path(argv[1].split("=", 1)[1])
        started.append(
            {
                "argv": list(argv),
                "env": kwargs.get("env"),
                "mode": defaults.stat().st_mode & 0o777,
                "file": defaults,
                "has_password": DRILL_PASSWORD.replace("\\", "\\\\").replace('"', '\\"') in defaults.read_text(),
            }
        )
        return real_popen(argv, **kwargs)

    monkeypatch.setattr("wardrobe.modules.backup.mariadb.subprocess.Popen", recording_popen)
    runner = CliRunner()
    asyncio.run(fill(drill_db.url, users=1))
    with capture_logs() as logs:
        created = runner.invoke(app, ["backup", "create", "--encrypt"])
        assert created.exit_code == 0, created.output
        archive = archive_from(created.output)
        verified = runner.invoke(app, ["backup", "verify", str(archive)])
        restored = runner.invoke(app, ["backup", "restore", str(archive), "--yes"])
    assert [entry["event"] for entry in logs] == ["backup_created", "backup_restored"]
    assert "Dr1ll" not in repr(logs)
    assert verified.exit_code == restored.exit_code == 0, verified.output + restored.output
    programs = [Path(entry["argv"][0]).name for entry in started]
    # create: dump + scratch load; verify: scratch load; restore: scratch load + load.
    assert programs.count("mariadb-dump") == 1, programs
    assert programs.count("mariadb") == 4, programs
    for entry in started:
        assert entry["argv"][1].startswith("--defaults-file=")
        assert not any(DRILL_PASSWORD in arg or "Dr1ll" in arg for arg in entry["argv"])
        env = entry["env"]
        assert env is not None
        assert "MYSQL_PWD" not in env
        assert not any("Dr1ll" in value for value in env.values())  # WARDROBE_DATABASE_URL is not passed on
        assert entry["mode"] == 0o600
        assert entry["has_password"]
        assert not entry["file"].exists()
    everything = created.output + verified.output + restored.output
    assert "Dr1ll" not in everything

    # A refused login says so, without the password it tried.
    wrong = drill_db.sa_url.set(password="Wr0ng #secret")
    monkeypatch.setenv("WARDROBE_DATABASE_URL", wrong.render_as_string(hide_password=False))
    get_settings.cache_clear()
    refused = runner.invoke(app, ["backup", "create"])
    assert refused.exit_code == 1
    assert "Access denied" in refused.output
    assert "Wr0ng" not in refused.output


def test_an_archive_of_a_newer_version_is_not_restored(drill_db: DrillDb) -> None:
    """Its revision is unknown to this code's migrations: `wardrobe migrate` could not go on."""
    runner = CliRunner()
    asyncio.run(fill(drill_db.url, users=1))
    asyncio.run(execute(drill_db.url, "UPDATE alembic_version SET version_num = '0099_future'"))
    archive = archive_from(runner.invoke(app, ["backup", "create"]).output)
    assert runner.invoke(app, ["backup", "verify", str(archive)]).exit_code == 0
    result = runner.invoke(app, ["backup", "restore", str(archive), "--yes"])
    assert result.exit_code == 1
    assert "revision 0099_future is not among this code's migrations" in result.output
    assert asyncio.run(state(drill_db.url))[0].alembic_revision == "0099_future"  # untouched
