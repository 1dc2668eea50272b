"""The Dockerfile and its build context, read as Docker would (no Docker here): a locked environment
built by uv, a runtime stage with the venv only, a non-root user, a healthcheck that works in the
slim image, and a .dockerignore that keeps secrets and local state out of the context."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from tests.deploy.stack import raw_compose
from tests.fixtures.tasks import ROOT
from wardrobe.modules.ops.endpoints import router as ops_router

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]


def _stages() -> list[Stage]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(name.strip(), base.strip()))
        elif stages:
            stages[-1].instructions.append((instruction, args))
    return stages


def test_two_stages_from_one_base_a_mirror_can_serve() -> None:
    builder, runtime = _stages()
    assert (builder.name, runtime.name) == ("builder", "runtime")
    assert builder.base == runtime.base == "${BASE_REGISTRY}/${PYTHON_IMAGE}", "the venv needs the same Python"
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "ARG BASE_REGISTRY=docker.io\n" in text
    assert not text.startswith("# syntax="), "BuildKit would pull that frontend from Docker Hub"
    assert re.search(r"ARG PYTHON_IMAGE=library/python:3\.1[1-9]\.\d+-slim", text), "pin the Python image"


def test_the_environment_is_uv_locked() -> None:
    builder, _ = _stages()
    runs = " ".join(builder.all("RUN"))
    assert "uv sync --locked --no-dev" in runs
    # The mirror path installs the lock's own export, hash-checked.
    assert "uv export --locked --no-dev" in runs
    assert "--require-hashes" in runs
    dev_py = (ROOT / "dev.py").read_text(encoding="utf-8")
    (uv_version,) = re.findall(r'^UV_VERSION = "([^"]+)"', dev_py, flags=re.MULTILINE)
    assert f"ARG UV_VERSION={uv_version}" in " ".join(f"{i} {a}" for i, a in builder.instructions)
    copied = {part for args in builder.all("COPY") for part in args.split()[:-1]}
    assert copied == {"pyproject.toml", "uv.lock", "README.md", "src"}


def test_the_runtime_runs_as_a_user_with_the_venv_only() -> None:
    _, runtime = _stages()
    assert runtime.all("COPY") == ["--from=builder /opt/venv /opt/venv"]
    users = runtime.all("USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), users
    keywords = [instruction for instruction, _ in runtime.instructions]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["wardrobe"]
    assert json.loads(runtime.all("CMD")[-1]) == ["serve"]


def _healthcheck_command() -> list[str]:
    _, runtime = _stages()
    (check,) = runtime.all("HEALTHCHECK")
    command = json.loads(check.split(" CMD ", 1)[1])
    assert isinstance(command, list)
    assert command[0] == "python", "the slim image has no curl"
    return command


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """The stub answers probes only: its access log would drown the test's output."""


@contextmanager
def _serving(status: int) -> Iterator[int]:
    handler = type("Handler", (_Health,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _run_check(port: int) -> int:
    command = [sys.executable, *_healthcheck_command()[1:]]
    done = subprocess.run(  # noqa: S603 - the Dockerfile's own check, against a local stub
        command, env={"WARDROBE_PORT": str(port)}, capture_output=True, timeout=30, check=False
    )
    return done.returncode


def test_the_image_healthcheck_tells_up_from_down() -> None:
    with _serving(200) as port:
        assert _run_check(port) == 0
    with _serving(503) as port:
        assert _run_check(port) != 0
    assert _run_check(port) != 0  # nothing listens any more


def test_healthchecks_ask_routes_the_api_has() -> None:
    paths = {getattr(route, "path", "") for route in ops_router.routes}
    assert "/health" in _healthcheck_command()[-1]
    assert "/health" in paths
    api_check = " ".join(raw_compose()["services"]["api"]["healthcheck"]["test"])
    assert "/health/ready" in api_check
    assert "/health/ready" in paths
    for name, service in raw_compose()["services"].items():
        test = (service.get("healthcheck") or {}).get("test") or []
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"{name} healthcheck", "exec")


def _pattern(glob: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(glob):
        if glob.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif glob.startswith("**", index):
            out, index = out + ".*", index + 2
        elif glob[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif glob[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(glob[index]), index + 1
    return re.compile(out + r"\Z")


def _in_context(path: str) -> bool:
    """Whether Docker sends ``path`` with the build context: the last pattern that matches it or
    one of its parent directories decides (`!` includes again)."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern(pattern.removeprefix("!").rstrip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            included = negate
    return included


def test_the_build_context_holds_no_secrets_and_no_local_state() -> None:
    for path in (
        ".env",
        ".env.production",
        "deploy/compose.env",
        "var/wardrobe.db",
        "var/master-keys.json",
        ".venv/bin/python",
        ".tools/bin/uv",
        ".services/mariadb-3401/data/ibdata1",
        ".git/config",
        "deploy/compose/certs/privkey.pem",
        "tests/conftest.py",
        "src/wardrobe/__pycache__/cli.cpython-312.pyc",
    ):
        assert not _in_context(path), f"{path} would be sent to the Docker build"


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    for path in ("pyproject.toml", "uv.lock", "README.md", "src/wardrobe/cli.py", "src/wardrobe/serving/nginx.conf.j2"):
        assert (ROOT / path).exists(), path
        assert _in_context(path), path
