"""Starting the servers the tests use, and stopping the private ones.

A *private* instance is ours alone: its data, log and pid file live in ``.services/<kind>-<port>/``
(ignored by git), it listens on 127.0.0.1 only, and it keeps running after the test run, so that
the next run finds it up (``python3 dev.py services stop`` stops it). A *system* instance is the
distribution's own, with its configuration and data directory; only root can start it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
MARIADB_SYSTEM_DATA = Path("/var/lib/mysql")
PID_FILES = {"redis": "redis.pid", "mariadb": "mariadbd.pid", "postgres": "data/postmaster.pid"}
_SOCKET_PATH_MAX = 100  # a Unix socket path must fit in sun_path (108 bytes on Linux)
# The server is started by a launcher that exits at once, so that init adopts it: dev.py becomes
# pytest by exec, and a server that was pytest's child would linger as its zombie once stopped.
_LAUNCH = "import subprocess, sys; subprocess.Popen(sys.argv[1:], start_new_session=True)"


class SetupError(RuntimeError):
    """A service could not be had; the message says what to do."""


def is_root() -> bool:
    return os.geteuid() == 0


def find_program(*names: str) -> str | None:
    """The first of ``names`` on PATH, or in the sbin directories a non-root PATH often lacks."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS])
    for name in names:
        found = shutil.which(name, path=search)
        if found:
            return found
    return None


def postgres_bindir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: Debian keeps them off PATH in
    /usr/lib/postgresql/<major>/bin (the newest major wins); other systems put them on PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major_version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _major_version(bindir: Path) -> int:
    name = bindir.parent.name
    return int(name) if name.isdigit() else 0


def installed(kind: str) -> bool:
    if kind == "mariadb":
        return bool(find_program("mariadbd", "mysqld") and find_program("mariadb-install-db", "mysql_install_db"))
    if kind == "redis":
        return find_program("redis-server") is not None
    return postgres_bindir() is not None


def _run(command: list[str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SetupError(f"{what} failed (exit {done.returncode}); see {log}")


def _spawn_detached(command: list[str], log: Path) -> None:
    _run([sys.executable, "-c", _LAUNCH, *command], log, f"starting {Path(command[0]).name}")


def _program(*names: str) -> str:
    found = find_program(*names)
    if found is None:
        raise SetupError(f"{names[0]} is not installed")
    return found


# --- private instances ---------------------------------------------------------------------------


def start_private(kind: str, home: Path, port: int, user: str) -> Path:
    """Start our own ``kind`` server on 127.0.0.1:``port`` with its files in ``home``, creating its
    data on first use; the log to read if it does not come up."""
    home.mkdir(parents=True, exist_ok=True)
    if kind == "redis":
        return _start_redis(home, port)
    if kind == "mariadb":
        return _start_mariadb(home, port)
    return _start_postgres(home, port, user)


def _start_redis(home: Path, port: int) -> Path:
    log = home / "redis.log"
    # Nothing is persisted (the tests' data is throw-away), so the directory only holds log and pid.
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "save": "",
        "appendonly": "no",
        "dir": str(home),
        "daemonize": "yes",
        "pidfile": str(home / PID_FILES["redis"]),
        "logfile": str(log),
    }
    command = [_program("redis-server")]
    for name, value in options.items():
        command += [f"--{name}", value]
    _run(command, log, "redis-server")
    return log


def _start_mariadb(home: Path, port: int) -> Path:
    data, log = home / "data", home / "mariadbd.log"
    # Root may run the server as itself only when it says so; the data then belongs to root.
    as_user = ["--user=root"] if is_root() else []
    if not (data / "mysql").is_dir():
        # "normal": root@localhost/127.0.0.1 without a password, as the tests' URL expects.
        install = [
            _program("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *as_user,
        ]
        _run(install, home / "install.log", "mariadb-install-db")
    sock = home / "mariadbd.sock"
    if len(str(sock)) > _SOCKET_PATH_MAX:
        sock = Path("/tmp") / f"wardrobe-mariadb-{port}.sock"  # noqa: S108 - a socket path must be short
    # --no-defaults: the system's my.cnf names the system's port, socket and data directory. The
    # character set is Debian's default, which the bare server does not have.
    server = [
        _program("mariadbd", "mysqld"),
        "--no-defaults",
        f"--datadir={data}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={sock}",
        f"--pid-file={home / PID_FILES['mariadb']}",
        f"--log-error={log}",
        "--skip-name-resolve",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        *as_user,
    ]
    _spawn_detached(server, home / "launch.log")
    return log


def _start_postgres(home: Path, port: int, user: str) -> Path:
    bindir = postgres_bindir()
    if bindir is None:
        raise SetupError("PostgreSQL is not installed")
    data, log = home / "data", home / "postgres.log"
    as_postgres = _postgres_user_prefix(home)
    if not (data / "PG_VERSION").exists():
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "--encoding=UTF8", "--locale=C"]
        _run([*as_postgres, *initdb], home / "initdb.log", "initdb")
        # No Unix socket: its path would have to be short, and the tests connect over TCP.
        settings = f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(settings)
    # pg_ctl starts the server in a session of its own and returns; readiness is checked by the caller.
    _run(
        [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-W", "start"],
        home / "pg_ctl.log",
        "pg_ctl start",
    )
    return log


def _postgres_user_prefix(home: Path) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the 'postgres' user, owning ``home``."""
    if not is_root():
        return []
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise SetupError("PostgreSQL cannot run as root, and there is no 'postgres' user to run it") from None
    for path in [home, *home.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)
    return [_program("runuser"), "-u", "postgres", "--"]


def stop_private(home: Path) -> bool:
    """Stop the server whose files are in ``home`` (pid from its pid file, checked against the
    process's command line so that a recycled pid is left alone); whether one was running."""
    kind = home.name.rsplit("-", 1)[0]
    pid_file = home / PID_FILES[kind]
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    if not _is_ours(pid, home):
        return False
    # PostgreSQL's SIGTERM waits for clients to leave; SIGINT is its fast shutdown.
    os.kill(pid, signal.SIGINT if kind == "postgres" else signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has already exited
    return True


def _is_ours(pid: int, home: Path) -> bool:
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: the pid file is all there is to go by
    port = home.name.rsplit("-", 1)[1]
    # Redis rewrites its command line to "redis-server 127.0.0.1:<port>".
    return str(home) in cmdline or f":{port}" in cmdline


# --- system instances ----------------------------------------------------------------------------


def system_mariadb_usable(port: int) -> bool:
    """Debian's server listens on 3306 with its data in /var/lib/mysql; only root may start it."""
    return is_root() and port == 3306 and (MARIADB_SYSTEM_DATA / "mysql").is_dir()


def system_postgres_cluster(port: int) -> tuple[str, str] | None:
    """The Debian cluster (version, name) configured for ``port``, if root may start it."""
    lsclusters = find_program("pg_lsclusters")
    if not is_root() or lsclusters is None or find_program("pg_ctlcluster") is None:
        return None
    listing = subprocess.run([lsclusters, "--no-header"], capture_output=True, text=True, check=False)  # noqa: S603
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(port):
            return fields[0], fields[1]
    return None


def start_system(kind: str, port: int, logs: Path) -> Path:
    """Start the distribution's own ``kind`` server; the log to read if it does not come up."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{kind}-system.log"
    if kind == "mariadb":
        run_dir = Path("/run/mysqld")  # the socket's directory, which a container's boot has not made
        run_dir.mkdir(exist_ok=True)
        with contextlib.suppress(KeyError):
            shutil.chown(run_dir, "mysql", "mysql")
        # Its own log is where /etc/mysql says (log-error); what it prints before that goes to ``log``.
        _spawn_detached([_program("mariadbd", "mysqld")], log)
        return log
    cluster = system_postgres_cluster(port)
    if cluster is None:
        raise SetupError(f"no PostgreSQL cluster on port {port}")
    _run([_program("pg_ctlcluster"), "--skip-systemctl-redirect", *cluster, "start"], log, "pg_ctlcluster start")
    return log
