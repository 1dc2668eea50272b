"""dev.py's service set-up (devtools/): which action for which situation, probes that tell a service
from another program on its port, and a Redis that is down started privately and answering."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from devtools import services
from devtools.probes import Probe, port_is_free, probe_mariadb, probe_postgres, probe_redis
from devtools.services import Action, Situation, Target, decide

REDIS = next(s for s in services.SERVICES if s.kind == "redis")


def _situation(probe: Probe, **changes: bool) -> Situation:
    values = {"local": True, "installed": True, "system_usable": False, "may_install": False, **changes}
    return Situation(probe, values["local"], values["installed"], values["system_usable"], values["may_install"])


@pytest.mark.parametrize(
    ("situation", "action"),
    [
        (_situation(Probe.READY, local=False, installed=False), Action.USE),
        (_situation(Probe.STARTING), Action.WAIT),
        (_situation(Probe.FREE, local=False), Action.FAIL_REMOTE),
        (_situation(Probe.FREE, installed=False, may_install=True), Action.INSTALL),
        (_situation(Probe.FREE, installed=False), Action.FAIL_MISSING),
        (_situation(Probe.OTHER, installed=False), Action.FAIL_MISSING),
        (_situation(Probe.FREE, system_usable=True), Action.START_SYSTEM),
        (_situation(Probe.FREE), Action.START_PRIVATE),
        (_situation(Probe.OTHER, system_usable=True), Action.START_PRIVATE_ELSEWHERE),
    ],
)
def test_each_situation_has_its_action(situation: Situation, action: Action) -> None:
    assert decide(situation) is action


def test_a_moved_address_keeps_the_user_and_the_database() -> None:
    assert Target(REDIS, "redis://localhost:6379/15").at(16379).url == "redis://127.0.0.1:16379/15"
    mariadb = next(s for s in services.SERVICES if s.kind == "mariadb")
    assert Target(mariadb, mariadb.default_url).at(13306).url == "mysql+asyncmy://root@127.0.0.1:13306"


def test_the_missing_message_names_one_command_with_every_package() -> None:
    message = services.missing_message(["MariaDB", "nginx (for x)"], ["mariadb-server", "nginx"])
    assert "apt-get install mariadb-server nginx" in message


def test_the_suite_services_answer_their_own_probe_and_not_the_others() -> None:
    mariadb, redis, postgres = services.configured()
    assert probe_mariadb(mariadb.host, mariadb.port) is Probe.READY
    assert probe_redis(redis.host, redis.port) is Probe.READY
    assert probe_postgres(postgres.host, postgres.port, postgres.user) is Probe.READY
    assert probe_redis(mariadb.host, mariadb.port) is Probe.OTHER
    assert probe_postgres(mariadb.host, mariadb.port, "postgres") is Probe.OTHER
    assert probe_mariadb(postgres.host, postgres.port) is Probe.OTHER
    assert probe_postgres(redis.host, redis.port, "postgres") is Probe.OTHER


@contextlib.contextmanager
def _other_program() -> Iterator[int]:
    """A port held by a server that is none of ours: it greets every client with a line of text."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", _free_port()))
    listener.listen()

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                with client:
                    client.sendall(b"220 not a database\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def _free_port() -> int:
    """A free port low enough that the private server's port (+10000) stays below the ephemeral range."""
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.randrange(20000, 22000)
        if port_is_free(port) and port_is_free(port + services.PRIVATE_PORT_OFFSET):
            return port
    raise RuntimeError("no free port")


def test_another_program_on_the_port_is_not_taken_for_a_service() -> None:
    with _other_program() as port:
        assert probe_redis("127.0.0.1", port) is Probe.OTHER
        assert probe_mariadb("127.0.0.1", port) is Probe.OTHER
        assert probe_postgres("127.0.0.1", port, "postgres") is Probe.OTHER
    assert probe_redis("127.0.0.1", port) is Probe.FREE


def _answers(url: str) -> bool:
    client = Redis.from_url(url)
    try:
        client.set("dev-services-check", "1")
        return client.get("dev-services-check") == b"1"
    finally:
        client.close()


def test_a_redis_that_is_down_is_started_privately_and_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv(REDIS.env, f"redis://127.0.0.1:{port}/15")
    try:
        environment = services.ensure(tmp_path, (REDIS,), tools=False)
        assert environment == {REDIS.env: f"redis://127.0.0.1:{port}/15"}
        assert (tmp_path / ".services" / f"redis-{port}" / "redis.pid").exists()
        assert _answers(environment[REDIS.env])
    finally:
        services.stop(tmp_path)
    assert probe_redis("127.0.0.1", port) is Probe.FREE


def test_a_port_held_by_another_program_moves_the_private_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _other_program() as held:
        monkeypatch.setenv(REDIS.env, f"redis://127.0.0.1:{held}/15")
        moved = f"redis://127.0.0.1:{held + services.PRIVATE_PORT_OFFSET}/15"
        try:
            assert services.ensure(tmp_path, (REDIS,), tools=False) == {REDIS.env: moved}
            assert _answers(moved)
            # The next run finds the private server up where the last one left it.
            assert services.ensure(tmp_path, (REDIS,), tools=False) == {REDIS.env: moved}
        finally:
            services.stop(tmp_path)
    assert probe_redis("127.0.0.1", held + services.PRIVATE_PORT_OFFSET) is Probe.FREE
