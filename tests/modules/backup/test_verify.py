"""`backup verify` refuses damaged archives, broken ledgers, wrong keys; an online SQLite backup
taken while a writer writes is consistent; archives go to S3 and verify from there."""

from __future__ import annotations

import asyncio
import tarfile
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from tests.fixtures.tasks import wait_until
from tests.modules.backup.drill import DrillDb, archive_from, drill_db, execute, fill, new_key
from tests.peers.s3_fixtures import S3_CREDENTIALS, S3Peer
from wardrobe.cli import app
from wardrobe.core.db import create_engine, create_session_factory, unit_of_work
from wardrobe.models import LedgerKind
from wardrobe.modules.backup.archive import read_manifest
from wardrobe.modules.backup.cipher import MAGIC
from wardrobe.modules.backup.service import create_backup, verify_backup
from wardrobe.modules.billing import quota
from wardrobe.settings import Environment, Settings, get_settings

__all__ = ["drill_db"]

runner = CliRunner()


def _create(*args: str) -> Path:
    result = runner.invoke(app, ["backup", "create", *args])
    assert result.exit_code == 0, result.output
    return archive_from(result.output)


def _payload_offset(archive: Path) -> tuple[int, int]:
    with tarfile.open(archive) as tar:
        member = tar.getmember(read_manifest(archive).payload_name)
        return member.offset_data, member.size


def test_a_flipped_byte_fails_the_checksum(drill_db: DrillDb) -> None:
    asyncio.run(fill(drill_db.url, users=2))
    archive = _create()
    assert runner.invoke(app, ["backup", "verify", str(archive)]).exit_code == 0
    offset, size = _payload_offset(archive)
    raw = bytearray(archive.read_bytes())
    raw[offset + size // 2] ^= 0x01
    archive.write_bytes(bytes(raw))
    result = runner.invoke(app, ["backup", "verify", str(archive)])
    assert result.exit_code == 1
    assert "payload sha256 mismatch" in result.output


def test_a_broken_ledger_fails_naming_the_user(drill_db: DrillDb) -> None:
    """A balance changed in the scratch restore (as a bad dump or a bug would) is reported with
    the user's id; the archive itself is fine and verifies untouched."""
    ids = asyncio.run(fill(drill_db.url, users=3))
    archive = _create()
    victim = ids[1]

    async def tamper(engine: AsyncEngine) -> None:
        await execute(
            engine.url.render_as_string(hide_password=False),
            "UPDATE quota_accounts SET balance = balance + 7 WHERE user_id = :uid",
            uid=victim,
        )

    checked = asyncio.run(verify_backup(get_settings(), str(archive), after_load=tamper))
    broken = [f for f in checked.failures if f.startswith("ledger invariant broken")]
    assert len(broken) == 1, checked.failures
    assert f"user {victim}:" in broken[0]
    assert "balance" in broken[0]
    assert "sum of ledger amount" in broken[0]
    assert any(f.startswith("ledger sums") for f in checked.failures)  # the totals moved by 7
    assert asyncio.run(verify_backup(get_settings(), str(archive))).ok


def test_a_backup_of_a_broken_ledger_fails_verification(drill_db: DrillDb) -> None:
    ids = asyncio.run(fill(drill_db.url, users=2))
    asyncio.run(execute(drill_db.url, "UPDATE quota_accounts SET held = held + 1 WHERE user_id = :uid", uid=ids[0]))
    created = runner.invoke(app, ["backup", "create"])
    assert created.exit_code == 0
    assert "1 quota accounts differ from their ledger" in created.output
    archive = archive_from(created.output)
    result = runner.invoke(app, ["backup", "verify", str(archive)])
    assert result.exit_code == 1
    assert f"user {ids[0]}: held" in result.output


def test_encrypted_round_trip_and_wrong_key(drill_db: DrillDb, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(fill(drill_db.url, users=2))
    archive = _create("--encrypt")
    manifest = read_manifest(archive)
    assert manifest.encrypted
    assert manifest.payload_name.endswith(".gz.enc")
    offset, _ = _payload_offset(archive)
    with archive.open("rb") as data:
        data.seek(offset)
        assert data.read(len(MAGIC)) == MAGIC  # not gzip: nothing of the dump is readable
    ok = runner.invoke(app, ["backup", "verify", str(archive)])
    assert ok.exit_code == 0, ok.output

    monkeypatch.setenv("WARDROBE_BACKUP_ENCRYPTION_KEY", new_key())
    get_settings.cache_clear()
    wrong = runner.invoke(app, ["backup", "verify", str(archive)])
    assert wrong.exit_code == 1
    assert "does not open under WARDROBE_BACKUP_ENCRYPTION_KEY" in wrong.output
    refused = runner.invoke(app, ["backup", "restore", str(archive), "--yes"])
    assert refused.exit_code == 1
    assert "not restored" in refused.output

    monkeypatch.setenv("WARDROBE_BACKUP_ENCRYPTION_KEY", "")
    get_settings.cache_clear()
    keyless = runner.invoke(app, ["backup", "verify", str(archive)])
    assert keyless.exit_code == 1
    assert "WARDROBE_BACKUP_ENCRYPTION_KEY is not set" in keyless.output
    assert runner.invoke(app, ["backup", "create", "--encrypt"]).exit_code == 1


@pytest.mark.parametrize("drill_db", ["sqlite"], indirect=True)
def test_sqlite_online_backup_is_consistent_while_a_writer_writes(drill_db: DrillDb) -> None:
    """Tasks keep reserving and confirming quota while three backups are taken: each archive's
    ledger adds up, and verifies."""
    ids = asyncio.run(fill(drill_db.url, users=2))
    stop = threading.Event()
    done = [0]

    async def write() -> None:
        engine = create_engine(Settings(env=Environment.TEST), database_url=drill_db.url)
        factory = create_session_factory(engine)
        try:
            while not stop.is_set():
                ref = f"busy-{done[0]}"
                async with unit_of_work(factory) as db:
                    await quota.credit(db, ids[0], 1, kind=LedgerKind.GRANT, ref=f"g-{ref}")
                    await quota.reserve(db, ids[0], 1, ref=ref, ttl=timedelta(hours=1))
                async with unit_of_work(factory) as db:
                    await quota.confirm(db, ref)
                done[0] += 1
        finally:
            await engine.dispose()

    writer = threading.Thread(target=lambda: asyncio.run(write()))
    writer.start()
    try:
        asyncio.run(wait_until(lambda: _at_least(done, 5)))
        seen = []
        for _ in range(3):
            created = asyncio.run(create_backup(get_settings()))
            assert created.manifest.ledger.violations == 0
            checked = asyncio.run(verify_backup(get_settings(), str(created.path)))
            assert checked.ok, checked.failures
            seen.append(created.manifest.row_counts["quota_ledger"])
        start = done[0]
        asyncio.run(wait_until(lambda: _at_least(done, start + 3)))  # still writing after them
    finally:
        stop.set()
        writer.join()
    assert seen == sorted(seen)
    assert seen[0] > 0


async def _at_least(counter: list[int], n: int) -> bool:
    return counter[0] >= n


@pytest.mark.parametrize("drill_db", ["sqlite"], indirect=True)
def test_upload_and_verify_from_s3(drill_db: DrillDb, s3_peer: S3Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "STORAGE_S3_ENDPOINT_URL": s3_peer.endpoint_url,
        "STORAGE_S3_REGION": s3_peer.region,
        "STORAGE_S3_ACCESS_KEY_ID": S3_CREDENTIALS.access_key_id,
        "STORAGE_S3_SECRET_ACCESS_KEY": S3_CREDENTIALS.secret_access_key,
        "STORAGE_S3_ADDRESSING_STYLE": "path",
        "BACKUP_BUCKET": s3_peer.bucket,
        "BACKUP_PREFIX": "db/nightly/",
    }.items():
        monkeypatch.setenv(f"WARDROBE_{name}", value)
    get_settings.cache_clear()
    asyncio.run(fill(drill_db.url, users=2))
    created = runner.invoke(app, ["backup", "create", "--encrypt", "--upload"])
    assert created.exit_code == 0, created.output
    url = created.output.split("uploaded to ", 1)[1].split()[0]
    local = archive_from(created.output)
    assert url == f"s3://{s3_peer.bucket}/db/nightly/{local.name}"
    client = s3_peer.client()
    try:
        stored = client.get_object(Bucket=s3_peer.bucket, Key=f"db/nightly/{local.name}")["Body"].read()
    finally:
        client.close()
    assert stored == local.read_bytes()
    local.unlink()
    verified = runner.invoke(app, ["backup", "verify", url])
    assert verified.exit_code == 0, verified.output
    missing = runner.invoke(app, ["backup", "verify", f"s3://{s3_peer.bucket}/db/nightly/nothing.tar"])
    assert missing.exit_code == 1
    assert "object storage" in missing.output
