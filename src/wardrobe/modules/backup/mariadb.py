"""MariaDB/MySQL through their own clients: ``mariadb-dump`` (or ``mysqldump``) writes a consistent
dump in one transaction while the service keeps writing (InnoDB), ``mariadb`` (or ``mysql``) plays
it back.

The password never goes on a command line (``ps`` and ``/proc/<pid>/cmdline`` show it to every
local user): the connection is handed over in a defaults file of mode 0600 that lives only as long
as the command.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from wardrobe.modules.backup.cipher import Readable, Writable

DUMP_OPTIONS = (
    "--single-transaction",  # one consistent InnoDB snapshot, no table locks
    "--routines",
    "--triggers",
    "--hex-blob",
    "--default-character-set=utf8mb4",
    "--skip-dump-date",
    "--no-tablespaces",  # MySQL 8 asks for the PROCESS privilege otherwise
)
CHUNK = 1024 * 1024


class ToolError(Exception):
    """A client program is missing or failed; the message holds its stderr (which never echoes the
    password: it is not on its command line)."""


def program(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise ToolError(f"none of {', '.join(names)} is installed (Debian: apt-get install mariadb-client)")


def _option_value(value: str) -> str:
    # Option files read "..." with backslash escapes; anything else would cut a password at '#'.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def defaults_file(url: URL) -> Iterator[Path]:
    """The ``[client]`` section for ``url`` in a private temporary file, removed afterwards."""
    lines = ["[client]"]
    host = url.host or "localhost"
    lines.append(f"host={_option_value(host)}")
    if url.port:
        lines.append(f"port={url.port}")
    if url.username:
        lines.append(f"user={_option_value(url.username)}")
    if url.password is not None:
        lines.append(f"password={_option_value(str(url.password))}")
    socket = url.query.get("unix_socket")
    if isinstance(socket, str):
        lines.append(f"socket={_option_value(socket)}")
    fd, name = tempfile.mkstemp(prefix="wardrobe-my-", suffix=".cnf")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def client_env() -> dict[str, str]:
    """The environment of a client program: ours without the service's settings (the database URL,
    password included, is one of them) and without MYSQL_PWD."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_") and k != "MYSQL_PWD"}


def dump_argv(defaults: Path, database: str) -> list[str]:
    """The dump command. The database is named alone (no CREATE DATABASE / USE in the dump), so the
    same dump restores into any database: the scratch one of ``verify`` or the target of ``restore``."""
    return [program("mariadb-dump", "mysqldump"), f"--defaults-file={defaults}", *DUMP_OPTIONS, database]


def load_argv(defaults: Path, database: str) -> list[str]:
    return [program("mariadb", "mysql"), f"--defaults-file={defaults}", "--default-character-set=utf8mb4", database]


def _stderr(process: subprocess.Popen[bytes]) -> str:
    if process.stderr is None:
        return ""
    return process.stderr.read().decode("utf-8", "replace").strip()[-2000:]


def dump(url: URL, out: Writable) -> None:
    """Stream the database of ``url`` into ``out``."""
    with defaults_file(url) as defaults:
        argv = dump_argv(defaults, url.database or "")
        process = subprocess.Popen(  # noqa: S603
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env()
        )
        with process:
            while process.stdout is not None and (chunk := process.stdout.read(CHUNK)):
                out.write(chunk)
            if process.wait() != 0:
                raise ToolError(f"{Path(argv[0]).name} failed ({process.returncode}): {_stderr(process)}")


def load(url: URL, source: Readable) -> None:
    """Play the SQL of ``source`` into the (existing) database of ``url``."""
    with defaults_file(url) as defaults:
        argv = load_argv(defaults, url.database or "")
        process = subprocess.Popen(  # noqa: S603
            argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env()
        )
        stdin = process.stdin
        if stdin is None:
            raise ToolError("no pipe to the client")
        with process:
            try:
                while chunk := source.read(CHUNK):
                    stdin.write(chunk)
                stdin.close()
            except BrokenPipeError:
                pass  # the client stopped early: its exit code and stderr say why
            except BaseException:
                process.kill()  # a payload that fails half-way must not be committed half-way
                raise
            if process.wait() != 0:
                raise ToolError(f"{Path(argv[0]).name} failed ({process.returncode}): {_stderr(process)}")


def scratch_name() -> str:
    return f"wardrobe_verify_{secrets.token_hex(6)}"


def engine_for(url: URL) -> AsyncEngine:
    """A plain engine (no pool, none of the service's session settings) for measuring and DDL."""
    return create_async_engine(url, poolclass=NullPool)


async def recreate_database(url: URL, *, drop_first: bool) -> None:
    """An empty database named ``url.database`` on the server of ``url`` (dropped first if asked)."""
    name = url.database or ""
    if not name.replace("_", "").isalnum():
        raise ToolError(f"refusing the database name {name!r}")
    server = engine_for(url._replace(database=None))  # set(database=None) keeps the name
    try:
        async with server.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if drop_first:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    finally:
        await server.dispose()


async def drop_database(url: URL) -> None:
    server = engine_for(url._replace(database=None))  # set(database=None) keeps the name
    try:
        async with server.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{url.database}`"))
    finally:
        await server.dispose()


def parse(database_url: str) -> URL:
    return make_url(database_url)
