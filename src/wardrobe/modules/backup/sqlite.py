"""SQLite (the embedded mode): SQLite's online backup API copies the database page by page inside
one read transaction, a consistent snapshot while the service keeps writing (WAL: readers never
block the writer)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import make_url

from wardrobe.modules.backup.archive import copy_stream
from wardrobe.modules.backup.cipher import Readable, Writable


def database_path(database_url: str) -> Path:
    url = make_url(database_url)
    if not url.database or url.database == ":memory:":
        raise ValueError("an in-memory SQLite database has nothing to back up")
    return Path(url.database)


def snapshot(source: Path, target: Path) -> None:
    """A consistent copy of ``source`` at ``target``, as one self-contained file (no WAL beside it)."""
    if not source.is_file():
        raise FileNotFoundError(f"no SQLite database at {source}")
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        # pages=-1: the whole copy in one step, under one read transaction. Stepping in smaller
        # pieces would restart the copy whenever another connection writes in between.
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


def copy_into(path: Path, out: Writable) -> None:
    with path.open("rb") as data:
        copy_stream(data, out)


def write_file(source: Readable, target: Path) -> None:
    with target.open("wb") as out:
        copy_stream(source, out)


def replace_database(restored: Path, target: Path) -> None:
    """Put ``restored`` in place of ``target`` in one rename; the old WAL and shared-memory files
    go first, or SQLite would replay the old database's WAL into the restored one."""
    for suffix in ("-wal", "-shm", "-journal"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    restored.replace(target)
