"""The services and tools the test suite needs, had before pytest starts.

`python3 dev.py test` must work on a fresh machine, and nothing in the suite is skipped: a missing
MariaDB, Redis or PostgreSQL fails the run. So before pytest starts, each service is taken at the
address the tests read (WARDROBE_TEST_MARIADB_SERVER, WARDROBE_TEST_REDIS_URL,
WARDROBE_TEST_POSTGRES_SERVER; 127.0.0.1:3306, :6379/15, :5432 by default):

1. answering there: use it;
2. installed but down: start it — the system's own server when root may and the port is its
   default, else a private one under ``.services/`` on that port, or on a free port when something
   else holds it (the tests are then told the new address through the same variables);
3. not installed, and this command may install (root on Debian/Ubuntu, as CI is): apt-get it;
4. otherwise stop, naming the one command that would install it.

The Debian tools some tests run (``ip`` from iproute2, nginx, chromium and chromedriver for the
console's browser tests, promtool and amtool for the Compose stack's monitoring and alert rules,
mariadb-dump for backups) follow rules 3 and 4.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit

from devtools import instances
from devtools.instances import SetupError
from devtools.probes import Probe, port_is_free, probe_mariadb, probe_postgres, probe_redis

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
READY_TIMEOUT_SECONDS = 90.0
PRIVATE_PORT_OFFSET = 10000  # a private MariaDB moved off 3306 goes to 13306 (or the next free port)


@dataclass(frozen=True)
class Service:
    name: str
    kind: str  # names its private directories: .services/<kind>-<port>/
    env: str
    default_url: str
    package: str  # the Debian package


SERVICES = (
    Service(
        "MariaDB", "mariadb", "WARDROBE_TEST_MARIADB_SERVER", "mysql+asyncmy://root@127.0.0.1:3306", "mariadb-server"
    ),
    Service("Redis", "redis", "WARDROBE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15", "redis-server"),
    Service(
        "PostgreSQL",
        "postgres",
        "WARDROBE_TEST_POSTGRES_SERVER",
        "postgresql+asyncpg://postgres@127.0.0.1:5432",
        "postgresql",
    ),
)
# (program, Debian package, the tests that run it)
TOOLS = (
    ("ip", "iproute2", "tests/test_multi_host.py"),
    ("nginx", "nginx", "tests/test_nginx_topology.py"),
    # The console's browser tests: headless Chromium driven through Debian's own driver.
    ("chromium", "chromium", "tests/console"),
    ("chromedriver", "chromium-driver", "tests/console"),
    # The Compose stack's Prometheus and Alertmanager configurations, checked by their own tools.
    ("promtool", "prometheus", "tests/deploy"),
    ("amtool", "prometheus-alertmanager", "tests/deploy"),
    # `wardrobe backup` dumps and restores MariaDB with its own client programs.
    ("mariadb-dump", "mariadb-client", "tests/modules/backup"),
    # The client kit: openapi-typescript and tsc regenerate clients/typescript; node tests its client.
    ("node", "nodejs", "tests/clients"),
    ("npm", "npm", "tests/clients"),
)


class Action(Enum):
    USE = "use it"
    WAIT = "wait until it is ready"
    START_SYSTEM = "start the system's server"
    START_PRIVATE = "start a private server on that port"
    START_PRIVATE_ELSEWHERE = "start a private server on a free port"
    INSTALL = "install it"
    FAIL_REMOTE = "fail: it is on another machine"
    FAIL_MISSING = "fail: it is not installed"


@dataclass(frozen=True)
class Situation:
    probe: Probe  # what answers at the configured address
    local: bool  # the address is on this machine
    installed: bool
    system_usable: bool  # root may start the system's server, and it listens on this port
    may_install: bool


def decide(situation: Situation) -> Action:
    """What to do about one service; the rules of the module docstring, in order."""
    if situation.probe is Probe.READY:
        return Action.USE
    if situation.probe is Probe.STARTING:
        return Action.WAIT
    if not situation.local:
        return Action.FAIL_REMOTE
    if not situation.installed:
        return Action.INSTALL if situation.may_install else Action.FAIL_MISSING
    if situation.probe is Probe.OTHER:
        return Action.START_PRIVATE_ELSEWHERE
    return Action.START_SYSTEM if situation.system_usable else Action.START_PRIVATE


@dataclass(frozen=True)
class Target:
    """A service at the address the tests will use."""

    service: Service
    url: str

    @property
    def parts(self) -> SplitResult:
        return urlsplit(self.url)

    @property
    def host(self) -> str:
        return self.parts.hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return self.parts.port or urlsplit(self.service.default_url).port or 0

    @property
    def user(self) -> str:
        return self.parts.username or "postgres"

    def at(self, port: int) -> Target:
        """The same service on 127.0.0.1:``port`` (where our private servers listen), same user and path."""
        user = f"{self.parts.username}@" if self.parts.username else ""
        return replace(self, url=urlunsplit(self.parts._replace(netloc=f"{user}127.0.0.1:{port}")))

    def probe(self) -> Probe:
        if self.service.kind == "redis":
            return probe_redis(self.host, self.port)
        if self.service.kind == "mariadb":
            return probe_mariadb(self.host, self.port)
        return probe_postgres(self.host, self.port, self.user)

    def describe(self) -> str:
        return f"{self.service.name} at {self.host}:{self.port}"


def may_install() -> bool:
    """Installing is for root on Debian/Ubuntu, as CI is; anyone else is told the command."""
    return (
        instances.is_root() and Path("/etc/debian_version").exists() and instances.find_program("apt-get") is not None
    )


def situation(target: Target) -> Situation:
    kind, port = target.service.kind, target.port
    if kind == "mariadb":
        system_usable = instances.system_mariadb_usable(port)
    elif kind == "postgres":
        system_usable = instances.system_postgres_cluster(port) is not None
    else:
        system_usable = False  # Redis keeps nothing on disk here: a private server is as good
    return Situation(
        target.probe(), target.host in LOCAL_HOSTS, instances.installed(kind), system_usable, may_install()
    )


def configured(services: tuple[Service, ...] = SERVICES) -> list[Target]:
    return [Target(service, os.environ.get(service.env) or service.default_url) for service in services]


def wait_until_ready(target: Target, log: Path | None, seconds: float = READY_TIMEOUT_SECONDS) -> None:
    """Poll the service's own readiness check until it answers, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while target.probe() is not Probe.READY:
        if time.monotonic() > deadline:
            where = f"; see {log}" if log else ""
            raise SetupError(f"{target.describe()} did not become ready within {seconds:.0f} s{where}")
        time.sleep(0.2)


def private_port(service: Service, wanted: int, root: Path) -> tuple[int, bool]:
    """A port for a private ``service`` when ``wanted`` is held by something else, and whether our
    server already answers there: first the ports of earlier private servers (their data is
    there), then the first free port from ``wanted`` + 10000."""
    homes = sorted(h for h in (root / ".services").glob(f"{service.kind}-*") if h.name.rsplit("-", 1)[1].isdigit())
    ports = [int(home.name.rsplit("-", 1)[1]) for home in homes]
    for port in ports:
        state = Target(service, service.default_url).at(port).probe()
        if state is Probe.READY:
            return port, True
        if state is Probe.FREE and port_is_free(port):
            return port, False
    for port in range(wanted + PRIVATE_PORT_OFFSET, wanted + PRIVATE_PORT_OFFSET + 200):
        if port not in ports and port < 65536 and port_is_free(port):
            return port, False
    raise SetupError(f"no free port for a private {service.name} from {wanted + PRIVATE_PORT_OFFSET}")


def bring_up(target: Target, action: Action, root: Path) -> Target:
    """Carry out ``action`` for ``target``; where the service answers afterwards."""
    if action is Action.USE:
        return target
    if action in (Action.INSTALL, Action.FAIL_MISSING, Action.FAIL_REMOTE):
        raise SetupError(f"{target.describe()} cannot be had ({action.value})")
    if action is Action.WAIT:
        wait_until_ready(target, None)
        return target
    if action is Action.START_SYSTEM:
        print(f"services: starting the system's {target.describe()}", flush=True)
        wait_until_ready(target, instances.start_system(target.service.kind, target.port, root / ".services"))
        return target
    if action is Action.START_PRIVATE_ELSEWHERE:
        port, running = private_port(target.service, target.port, root)
        held = f"services: {target.host}:{target.port} is held by something that is not {target.service.name}"
        target = target.at(port)
        if running:
            print(f"{held}; using the private one at {target.host}:{port}", flush=True)
            return target
        print(held, flush=True)
    else:
        target = target.at(target.port)
    home = root / ".services" / f"{target.service.kind}-{target.port}"
    print(f"services: starting a private {target.describe()} (files in {home.relative_to(root)}/)", flush=True)
    wait_until_ready(target, instances.start_private(target.service.kind, home, target.port, target.user))
    return target


def missing_tools() -> list[tuple[str, str, str]]:
    return [tool for tool in TOOLS if instances.find_program(tool[0]) is None]


def install(packages: list[str]) -> None:
    """apt-get install, refreshing the package lists only when the first try fails (as CI did)."""
    print(f"services: installing {' '.join(packages)} with apt-get", flush=True)
    apt_get = instances.find_program("apt-get") or "apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = [apt_get, "install", "-y", "--no-install-recommends", *packages]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        subprocess.run([apt_get, "update"], env=env, capture_output=True, check=False)  # noqa: S603
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SetupError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def missing_message(names: list[str], packages: list[str]) -> str:
    listed = ", ".join(names)
    if instances.find_program("apt-get") is None:
        return (
            f"the test suite needs {listed}, which this machine does not have; install them with the system's "
            f"package manager (Debian's packages: {' '.join(packages)}) and run the command again"
        )
    sudo = "" if instances.is_root() else "sudo "
    return (
        f"the test suite needs {listed}, which this machine does not have. Install them with\n\n"
        f"    {sudo}apt-get install {' '.join(packages)}\n\nand run the command again"
    )


def ensure(root: Path, services: tuple[Service, ...] = SERVICES, tools: bool = True) -> dict[str, str]:
    """Have every service and tool the suite needs; the environment that tells pytest where the
    services answer. Raises SetupError when one cannot be had."""
    targets = configured(services)
    plans = {target: decide(situation(target)) for target in targets}
    remote = [t.describe() for t, action in plans.items() if action is Action.FAIL_REMOTE]
    if remote:
        raise SetupError(f"{', '.join(remote)} does not answer, and is not on this machine to be started")
    absent = [t.service for t, action in plans.items() if action in (Action.INSTALL, Action.FAIL_MISSING)]
    absent_tools = missing_tools() if tools else []
    if tools and not instances.is_root():
        print("services: not root: tests/test_multi_host.py cannot create network namespaces and will fail", flush=True)
    if absent or absent_tools:
        names = [s.name for s in absent] + [f"{tool} (for {test})" for tool, _, test in absent_tools]
        packages = [s.package for s in absent] + [package for _, package, _ in absent_tools]
        if not may_install():
            raise SetupError(missing_message(names, packages))
        install(packages)
        plans = {target: decide(situation(target)) for target in targets}
    return {target.service.env: bring_up(target, action, root).url for target, action in plans.items()}


def stop(root: Path) -> None:
    """Stop the private servers under ``.services/`` (never a system one, nor anyone else's)."""
    for home in sorted((root / ".services").glob("*-*")):
        if home.is_dir() and home.name.rsplit("-", 1)[0] in instances.PID_FILES and instances.stop_private(home):
            print(f"services: stopped {home.relative_to(root)}")


def main(argv: list[str], root: Path) -> int:
    """`python3 dev.py services`: have the services and say where they answer; `... services stop`:
    stop the private ones."""
    if argv == ["stop"]:
        stop(root)
        return 0
    if argv:
        print("usage: python3 dev.py services [stop]")
        return 2
    try:
        environment = ensure(root)
    except SetupError as exc:
        print(f"services: {exc}")
        return 1
    for name, url in environment.items():
        print(f"{name}={url}")
    return 0
