#!/usr/bin/env python3
"""Wardrobe's bootstrap: needs only Python >= 3.11 on the machine.

    python3 dev.py serve     # install (first run) and start the embedded service on :8000
    python3 dev.py test      # install (first run) and run the whole test suite
    python3 dev.py clients   # regenerate the client kit (clients/) from the API: see clients/README.md

It keeps uv in .tools/ and the locked environment in .venv/, then runs the command inside it.
Any extra arguments go to the command (e.g. `python3 dev.py test -k refresh`).

`test` first has the services the suite needs (MariaDB, Redis, PostgreSQL) and the Debian tools it
runs: started when down, installed when missing and root may (devtools/services.py says how).
`python3 dev.py services` does only that; `python3 dev.py services stop` stops the private servers
it started under .services/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# devtools/ sits beside this file; `python3 -I` or PYTHONSAFEPATH would leave this directory off sys.path.
sys.path.insert(0, str(ROOT))

from devtools import services, sizes  # noqa: E402
from devtools.instances import SetupError  # noqa: E402

TOOLS = ROOT / ".tools"
VENV = ROOT / ".venv"
UV_VERSION = "0.13.9"
BIN = "Scripts" if os.name == "nt" else "bin"

COMMANDS = {
    "serve": ["wardrobe", "serve"],
    "test": ["python", "-m", "pytest"],
    "lint": None,
    "bench": None,
    "bench-tasks": None,
    "bench-realtime": None,
    "bench-vendors": None,
    "bench-storage-gc": None,
    "bench-exports": None,
    "bench-stats": None,
    "wardrobe": ["wardrobe"],
    "services": None,
    "clients": None,
}

BENCH_SCRIPTS = {
    "bench": "bench/run.py",
    "bench-tasks": "bench/tasks_flow.py",
    "bench-realtime": "bench/realtime.py",
    "bench-vendors": "bench/vendors.py",
    "bench-storage-gc": "bench/storage_gc.py",
    "bench-exports": "bench/exports.py",
    "bench-stats": "bench/stats.py",
}


def run(cmd: list[str], **kwargs: object) -> None:
    result = subprocess.run(cmd, cwd=ROOT, check=False, **kwargs)  # noqa: S603 - our own fixed commands
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_uv() -> Path:
    uv = TOOLS / BIN / "uv"
    if not uv.exists():
        print(f"bootstrap: installing uv {UV_VERSION} into {TOOLS.name}/", flush=True)
        venv.create(TOOLS, with_pip=True, clear=True)
        run([str(TOOLS / BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"uv=={UV_VERSION}"])
    return uv


def ensure_env(groups: list[str]) -> None:
    uv = ensure_uv()
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV), "UV_PYTHON_DOWNLOADS": "never"}
    cmd = [str(uv), "sync", "--frozen", "--quiet", "--python", sys.executable]
    for group in groups:
        cmd += ["--group", group]
    run(cmd, env=env)


def venv_bin(name: str) -> str:
    return str(VENV / BIN / name)


def ensure_services() -> None:
    """Have the suite's services before installing anything else, and tell pytest where they answer."""
    try:
        os.environ.update(services.ensure(ROOT))
    except SetupError as exc:
        print(f"dev.py test: {exc}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        print("commands: serve, test, lint, bench, bench-tasks, bench-realtime, bench-vendors, bench-storage-gc, "
              "bench-exports, bench-stats, services [stop], clients, wardrobe <args>")
        sys.exit(2)
    command, extra = sys.argv[1], sys.argv[2:]
    if command == "services":
        sys.exit(services.main(extra, ROOT))
    if command == "test":
        ensure_services()
    ensure_env(["bench"] if command.startswith("bench") else [])
    os.chdir(ROOT)
    if command == "lint":
        paths = [p for p in ("src", "tests", "bench", "examples", "devtools", "clients") if (ROOT / p).exists()]
        run([venv_bin("ruff"), "format", "--check", *paths])
        run([venv_bin("ruff"), "check", *paths])
        # clients/python/wardrobe_client given by path: mypy then finds it where the tests import it.
        run([venv_bin("mypy"), "src", "tests", "examples", "devtools", "clients/python/wardrobe_client"])
        # The shape of the code: layers and no import circles (pyproject.toml), then sizes.
        run([venv_bin("lint-imports")])
        if sizes.main(ROOT / "src") != 0:
            sys.exit(1)
        return
    if command == "clients":
        # The OpenAPI snapshot, the Python client's generated module and the TypeScript types and
        # compiled client (npm ci and the pinned tools in a scratch directory): clients/generate.py.
        run([venv_bin("python"), "clients/generate.py", *extra])
        return
    if command in BENCH_SCRIPTS:
        script = BENCH_SCRIPTS[command]
        run([venv_bin("python"), script, *extra])
        return
    if command == "test" and not extra:
        # The full run: on two pytest-xdist workers (the machine's two cores; `--dist loadgroup` of
        # pyproject.toml keeps the tests that run processes of their own on one of them), with
        # coverage, holding the line on it.
        extra = ["-n", "2", "--cov", "--cov-report=term", "--cov-fail-under=85"]
    base = COMMANDS[command] or []
    executable = venv_bin(base[0])
    os.execv(executable, [executable, *base[1:], *extra])  # noqa: S606 - replaces this process on purpose


if __name__ == "__main__":
    main()
