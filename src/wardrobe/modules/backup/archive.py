"""The backup archive: an uncompressed tar of two members, ``manifest.json`` first, then the
payload (the database, gzip-compressed, then encrypted when asked: ``payload.sql.gz[.enc]`` for
MariaDB/MySQL, ``payload.sqlite.gz[.enc]`` for SQLite).

The manifest says what the payload must restore to (row counts, the Alembic revision, the ledger's
sums) and carries the payload's SHA-256, so a copy damaged in transit or at rest is refused before
anything is restored from it. Payloads are written and read as streams: a dump never sits whole in
memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from wardrobe.modules.backup.cipher import DecryptingReader, EncryptingWriter, Readable, Writable

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
COPY_CHUNK = 1024 * 1024


class ArchiveError(Exception):
    """The archive is not one of ours, is damaged, or cannot be opened with what we have."""


@dataclass
class LedgerSummary:
    """The quota ledger at the time of the backup, summed (no user is named here)."""

    accounts: int = 0
    ledger_rows: int = 0
    balance_total: int = 0
    held_total: int = 0
    violations: int = 0  # accounts whose balance/held differ from their ledger (should be 0)


@dataclass
class Manifest:
    database: str  # "mysql" (MariaDB or MySQL) or "sqlite"
    created_at: str
    alembic_revision: str | None
    row_counts: dict[str, int]
    ledger: LedgerSummary
    payload_name: str
    payload_sha256: str = ""
    payload_bytes: int = 0
    encrypted: bool = False
    compression: str = "gzip"
    format_version: int = FORMAT_VERSION
    tool: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data: dict[str, Any] = json.loads(raw)
            if data.get("format_version") != FORMAT_VERSION:
                raise ArchiveError(f"unknown archive format version {data.get('format_version')!r}")
            data["ledger"] = LedgerSummary(**data["ledger"])
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise ArchiveError(f"the manifest is unreadable: {type(exc).__name__}") from None


class _HashingSink(io.RawIOBase):
    """Counts and hashes what passes to the file below."""

    def __init__(self, out: BinaryIO) -> None:
        super().__init__()
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


@dataclass
class PayloadDigest:
    sha256: str
    size: int


@contextmanager
def payload_writer(path: Path, key: bytes | None, digest: PayloadDigest) -> Iterator[Writable]:
    """A file to write the plain database into; on leaving, ``path`` holds it gzip-compressed (and
    encrypted under ``key``) and ``digest`` the SHA-256 and size of those stored bytes."""
    with path.open("wb") as raw:
        sink = _HashingSink(raw)
        encryptor = EncryptingWriter(sink, key) if key is not None else None
        with gzip.GzipFile(fileobj=encryptor or sink, mode="wb", compresslevel=6, mtime=0) as zipped:
            yield zipped
        if encryptor is not None:
            encryptor.close()
        digest.sha256, digest.size = sink.sha.hexdigest(), sink.size


def payload_name(database: str, encrypted: bool) -> str:
    base = "payload.sqlite.gz" if database == "sqlite" else "payload.sql.gz"
    return base + (".enc" if encrypted else "")


def write_archive(target: Path, manifest: Manifest, payload: Path) -> None:
    """The tar at ``target`` (written beside it, then renamed: never a half archive under its name)."""
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        raw = manifest.to_json()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mode = len(raw), 0o600
        tar.addfile(info, io.BytesIO(raw))
        info = tarfile.TarInfo(manifest.payload_name)
        info.size, info.mode = payload.stat().st_size, 0o600
        with payload.open("rb") as data:
            tar.addfile(info, data)
    partial.chmod(0o600)
    partial.replace(target)


def read_manifest(archive: Path) -> Manifest:
    try:
        with tarfile.open(archive, "r:") as tar:
            member = tar.extractfile(MANIFEST_NAME)
            if member is None:
                raise ArchiveError("the archive has no manifest")
            return Manifest.from_json(member.read())
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise ArchiveError(f"not a readable backup archive: {type(exc).__name__}") from None


def check_payload(archive: Path, manifest: Manifest) -> str | None:
    """None when the payload's SHA-256 and size are those of the manifest, else what differs."""
    sha, size = hashlib.sha256(), 0
    try:
        with tarfile.open(archive, "r:") as tar, _member(tar, manifest) as data:
            while chunk := data.read(COPY_CHUNK):
                sha.update(chunk)
                size += len(chunk)
    except (tarfile.TarError, OSError) as exc:
        return f"the payload is unreadable: {type(exc).__name__}"
    if sha.hexdigest() != manifest.payload_sha256 or size != manifest.payload_bytes:
        return (
            f"payload sha256 mismatch: the manifest says {manifest.payload_sha256} ({manifest.payload_bytes} "
            f"bytes), the archive holds {sha.hexdigest()} ({size} bytes)"
        )
    return None


@contextmanager
def _member(tar: tarfile.TarFile, manifest: Manifest) -> Iterator[IO[bytes]]:
    try:
        data = tar.extractfile(manifest.payload_name)
    except KeyError:
        raise ArchiveError(f"the archive has no {manifest.payload_name}") from None
    if data is None:
        raise ArchiveError(f"{manifest.payload_name} is not a file")
    with data:
        yield data


@contextmanager
def plain_reader(data: IO[bytes], encrypted: bool, key: bytes | None) -> Iterator[Readable]:
    """The plain database out of a stored payload stream (decrypted, decompressed on the fly)."""
    if encrypted and key is None:
        raise ArchiveError("the archive is encrypted: set WARDROBE_BACKUP_ENCRYPTION_KEY")
    source: IO[bytes] = data
    if encrypted and key is not None:
        source = cast(IO[bytes], io.BufferedReader(DecryptingReader(data, key), COPY_CHUNK))
    with gzip.GzipFile(fileobj=source, mode="rb") as plain:
        yield plain


@contextmanager
def open_payload(archive: Path, manifest: Manifest, key: bytes | None) -> Iterator[Readable]:
    """The plain database inside ``archive``, as a readable stream."""
    with (
        tarfile.open(archive, "r:") as tar,
        _member(tar, manifest) as data,
        plain_reader(data, manifest.encrypted, key) as plain,
    ):
        yield plain


def copy_stream(source: Readable, target: Writable) -> None:
    while chunk := source.read(COPY_CHUNK):
        target.write(chunk)
