"""Create, verify and restore backup archives (``wardrobe backup``).

Both at creation and at verification the numbers come from the payload itself, restored: SQLite's
snapshot file is measured directly, a MariaDB dump is played into a scratch database
``wardrobe_verify_<random>`` on the same server (dropped afterwards). Counting on the live server
instead would see a different moment than the dump's snapshot while the service writes, and a
verification against such a manifest would fail for no fault of the backup.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from wardrobe.core.logging import get_logger
from wardrobe.migrations.runner import alembic_config
from wardrobe.modules.backup import mariadb, remote, sqlite
from wardrobe.modules.backup.archive import (
    ArchiveError,
    Manifest,
    PayloadDigest,
    check_payload,
    open_payload,
    payload_name,
    payload_writer,
    plain_reader,
    read_manifest,
    write_archive,
)
from wardrobe.modules.backup.cipher import BackupDecryptionError, Readable
from wardrobe.modules.backup.snapshot import Snapshot, compare, measure
from wardrobe.settings import Settings, parse_backup_key


def _log() -> Any:
    # Looked up at each use, not cached at import: structlog.testing.capture_logs then sees every event.
    return get_logger("wardrobe.backup")


# A test (or an operator's drill) may change the scratch database before it is measured.
AfterLoad = Callable[[AsyncEngine], Awaitable[None]]
# Opens the plain database of a payload, as a stream.
PayloadSource = Callable[[], AbstractContextManager[Readable]]


class BackupError(Exception):
    """The backup could not be made or read; the message says why (never a password)."""


@dataclass
class Created:
    path: Path
    manifest: Manifest
    uploaded_to: str | None = None


@dataclass
class Checked:
    manifest: Manifest | None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def known_revision(revision: str) -> bool:
    """Whether this code's migrations know ``revision`` (so that `wardrobe migrate` can go on)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def database_kind(url: URL) -> str:
    backend = url.get_backend_name()
    if backend in ("sqlite", "mysql", "mariadb"):
        return "sqlite" if backend == "sqlite" else "mysql"
    raise BackupError(f"backups cover SQLite and MariaDB/MySQL, not {backend}")


def _key(settings: Settings, needed: bool) -> bytes | None:
    if not needed:
        return None
    raw = settings.backup_encryption_key.get_secret_value()
    if not raw:
        raise BackupError("WARDROBE_BACKUP_ENCRYPTION_KEY is not set")
    return parse_backup_key(raw)


@contextmanager
def _open_file_payload(path: Path, encrypted: bool, key: bytes | None) -> Iterator[Readable]:
    with path.open("rb") as data, plain_reader(data, encrypted, key) as plain:
        yield plain


def _target_path(settings: Settings, output: Path | None, kind: str, now: datetime) -> Path:
    name = f"wardrobe-{kind}-{now.strftime('%Y%m%dT%H%M%SZ')}.tar"
    if output is None:
        output = settings.backup_dir
    # A directory (existing, or any name without an extension: Path drops a trailing slash).
    if output.is_dir() or not output.suffix:
        output.mkdir(parents=True, exist_ok=True)
        return output / name
    output.parent.mkdir(parents=True, exist_ok=True)
    return output


async def _measure_url(url: URL, after_load: AfterLoad | None = None) -> Snapshot:
    engine = mariadb.engine_for(url)
    try:
        if after_load is not None:
            await after_load(engine)
        return await measure(engine)
    finally:
        await engine.dispose()


def _sqlite_url(path: Path) -> URL:
    return make_url(f"sqlite+aiosqlite:///{path}")


async def _load_scratch_mysql(server: URL, payload: PayloadSource, after: AfterLoad | None) -> Snapshot:
    """Play the payload into a new ``wardrobe_verify_<random>`` database on ``server``, measure it,
    drop it."""
    scratch = server.set(database=mariadb.scratch_name())
    await mariadb.recreate_database(scratch, drop_first=False)
    try:
        with payload() as plain:
            await asyncio.to_thread(mariadb.load, scratch, plain)
        return await _measure_url(scratch, after)
    finally:
        await mariadb.drop_database(scratch)


async def create_backup(
    settings: Settings, *, output: Path | None = None, encrypt: bool = False, upload: bool = False
) -> Created:
    """Write an archive of the service's database (and upload it when asked)."""
    url = make_url(settings.database_url)
    kind = database_kind(url)
    key = _key(settings, encrypt)
    if upload and not settings.backup_bucket:
        raise BackupError("--upload needs WARDROBE_BACKUP_BUCKET")
    now = datetime.now(UTC)
    target = _target_path(settings, output, kind, now)
    digest = PayloadDigest("", 0)
    dumper = Path(mariadb.program("mariadb-dump", "mysqldump")).name if kind == "mysql" else ""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".wardrobe-backup-") as work:
        payload = Path(work) / payload_name(kind, encrypt)
        if kind == "sqlite":
            snap = Path(work) / "snapshot.db"
            await asyncio.to_thread(sqlite.snapshot, sqlite.database_path(settings.database_url), snap)
            with payload_writer(payload, key, digest) as out:
                await asyncio.to_thread(sqlite.copy_into, snap, out)
            found = await _measure_url(_sqlite_url(snap))
        else:
            with payload_writer(payload, key, digest) as out:
                await asyncio.to_thread(mariadb.dump, url, out)
            found = await _load_scratch_mysql(url, partial(_open_file_payload, payload, encrypt, key), None)
        manifest = Manifest(
            database=kind,
            created_at=now.isoformat(),
            alembic_revision=found.alembic_revision,
            row_counts=found.row_counts,
            ledger=found.ledger,
            payload_name=payload.name,
            payload_sha256=digest.sha256,
            payload_bytes=digest.size,
            encrypted=encrypt,
            tool={"dump": "sqlite3 online backup" if kind == "sqlite" else f"{dumper} --single-transaction"},
        )
        write_archive(target, manifest, payload)
    _log().info("backup_created", archive=target.name, database=kind, bytes=digest.size, encrypted=encrypt)
    if found.violations:
        _log().warning("backup_ledger_violations", count=len(found.violations))
    uploaded = await remote.upload(settings, target) if upload else None
    return Created(target, manifest, uploaded)


async def _check_archive(settings: Settings, archive: Path, server_url: str | None, after: AfterLoad | None) -> Checked:
    try:
        manifest = read_manifest(archive)
    except ArchiveError as exc:
        return Checked(None, [str(exc)])
    mismatch = check_payload(archive, manifest)
    if mismatch:
        return Checked(manifest, [mismatch])
    try:
        key = _key(settings, manifest.encrypted)
        if manifest.database == "sqlite":
            with tempfile.TemporaryDirectory(prefix="wardrobe-verify-") as work:
                restored = Path(work) / "restored.db"
                with open_payload(archive, manifest, key) as plain:
                    await asyncio.to_thread(sqlite.write_file, plain, restored)
                found = await _measure_url(_sqlite_url(restored), after)
        else:
            server = make_url(server_url or settings.database_url)
            if database_kind(server) != "mysql":
                raise BackupError("a MariaDB archive is verified on a MariaDB server: give --server-url")
            found = await _load_scratch_mysql(server, partial(open_payload, archive, manifest, key), after)
    except (BackupError, ArchiveError, BackupDecryptionError, mariadb.ToolError, ValueError, EOFError, OSError) as exc:
        return Checked(manifest, [f"restore failed: {exc}"])
    return Checked(manifest, compare(manifest, found))


async def verify_backup(
    settings: Settings, source: str, *, server_url: str | None = None, after_load: AfterLoad | None = None
) -> Checked:
    """Check an archive (a path or an ``s3://`` URL): its checksum, then restored into a scratch
    database, its row counts, revision and ledger invariants. Every failure is listed."""
    if source.startswith("s3://"):
        with tempfile.TemporaryDirectory(prefix="wardrobe-verify-") as work:
            local = Path(work) / "archive.tar"
            await remote.download(settings, source, local)
            return await _check_archive(settings, local, server_url, after_load)
    archive = Path(source)
    if not await asyncio.to_thread(archive.is_file):
        return Checked(None, [f"no archive at {source}"])
    return await _check_archive(settings, archive, server_url, after_load)


async def restore_backup(settings: Settings, source: str, *, target_url: str | None = None) -> Checked:
    """Verify the archive, then replace the target database with it (the service's own by
    default) and check the result the same way. Nothing is touched when verification fails."""
    if source.startswith("s3://"):
        with tempfile.TemporaryDirectory(prefix="wardrobe-restore-") as work:
            local = Path(work) / "archive.tar"
            await remote.download(settings, source, local)
            return await _restore_local(settings, local, target_url)
    return await _restore_local(settings, Path(source), target_url)


async def _restore_local(settings: Settings, archive: Path, target_url: str | None) -> Checked:
    target = make_url(target_url or settings.database_url)
    kind = database_kind(target)
    server = target_url if kind == "mysql" else None
    checked = await verify_backup(settings, str(archive), server_url=server)
    if not checked.ok or checked.manifest is None:
        return Checked(checked.manifest, ["not restored: the archive failed verification", *checked.failures])
    manifest = checked.manifest
    if manifest.database != kind:
        return Checked(manifest, [f"not restored: a {manifest.database} archive cannot go into a {kind} database"])
    if manifest.alembic_revision is not None and not known_revision(manifest.alembic_revision):
        return Checked(
            manifest,
            [
                f"not restored: revision {manifest.alembic_revision} is not among this code's migrations "
                "(an archive of a newer version: restore it with that version)"
            ],
        )
    key = _key(settings, manifest.encrypted)
    if kind == "mysql":
        await mariadb.recreate_database(target, drop_first=True)
        with open_payload(archive, manifest, key) as plain:
            await asyncio.to_thread(mariadb.load, target, plain)
        found = await _measure_url(target)
    else:
        path = sqlite.database_path(target.render_as_string(hide_password=False))
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(path.name + ".restoring")
        with open_payload(archive, manifest, key) as plain:
            await asyncio.to_thread(sqlite.write_file, plain, staged)
        found = await _measure_url(_sqlite_url(staged))
        sqlite.replace_database(staged, path)
    _log().info("backup_restored", archive=archive.name, database=kind, revision=manifest.alembic_revision)
    return Checked(manifest, compare(manifest, found))
