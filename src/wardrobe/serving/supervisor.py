"""`wardrobe serve --workers N`: N uvicorn processes on one shared port, each also on a port of its own.

Why our own supervisor: uvicorn's (``uvicorn.supervisors.Multiprocess``) hands every process the same
sockets, and Socket.IO needs more. An Engine.IO session lives in the memory of the process that
answered its handshake, and over long-polling every later request of the session is a new HTTP
request that the shared port gives to any process — most of them fail. So process i also listens on
a private port (``ports[i]``) and is named ``api{i}`` (``WARDROBE_SOCKETIO_NODE``), the prefix of
the session ids it makes; nginx sends each ``/socket.io/`` request carrying ``sid=api{i}.…`` to
port i (realtime/nodes.py, serving/nginx.py).

This subclass keeps everything else of uvicorn's: the parent binds the sockets once, restarts a
process that dies or stops answering its health check (with the same slot's private socket and
name; a new process has ``STARTUP_SECONDS`` to start before it is checked), replaces them one by
one on SIGHUP (each old one drains once its successor serves), and on SIGTERM/SIGINT stops every process gracefully
and waits for them. Growing or shrinking with SIGTTIN/SIGTTOU is refused: nginx's configuration
names each process, so the count is part of the deployment.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import time

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors.multiprocess import Multiprocess, Process, logger

from wardrobe.realtime.nodes import node_name

NODE_VARIABLE = "WARDROBE_SOCKETIO_NODE"
# How long a new process may take to start (spawn, imports, the app's startup) before it counts as
# hung. uvicorn's health-check timeout (5 s) suits a process that serves; on a busy machine a start
# alone takes longer, and uvicorn would kill the process for it, or abort a rolling restart.
STARTUP_SECONDS = 120.0


def socketio_ports(port: int, base: int, workers: int) -> list[int]:
    """The private ports of ``workers`` processes: ``base + i``, or ``port + 1 + i`` when base is 0."""
    start = base or port + 1
    ports = [start + i for i in range(workers)]
    if ports[-1] > 65535:
        raise ValueError(f"private ports {ports[0]}-{ports[-1]} go past 65535")
    if port in ports:
        raise ValueError(f"the private ports {ports[0]}-{ports[-1]} include the shared port {port}")
    return ports


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, but a stopping process never closes an idle keep-alive connection.

    uvicorn closes them at once on SIGTERM; nginx may be writing a request on one in that very
    instant, and it resends only idempotent requests, so a POST would fail with 502 during every
    rolling restart now and then. Here an idle connection is left open: nginx closes it itself once
    it has been idle for its ``keepalive_timeout`` (2 s in our site, shorter than uvicorn's 5 s and
    than WARDROBE_SHUTDOWN_GRACE_SECONDS, which uvicorn waits for the connections), and a request
    that still arrives on it is answered, with ``Connection: close``."""

    draining = False

    def shutdown(self) -> None:
        self.draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False


class NodeProcess(Process):
    """One API process: names itself before the app (and its settings) is built in the child."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], node: str) -> None:
        self.node = node
        super().__init__(config, sockets)

    def _healthcheck(self, timeout: float) -> bool | None:
        # A ping that timed out (a process still importing) is answered late: drop such answers,
        # so that this one says how the process is now.
        with contextlib.suppress(OSError, EOFError):
            while self.parent_conn.poll(0):
                self.parent_conn.recv()
        return super()._healthcheck(timeout)

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # runs in the child
        os.environ[NODE_VARIABLE] = self.node
        super().target(sockets)


class NodeSupervisor(Multiprocess):
    def __init__(self, config: uvicorn.Config, shared: list[socket.socket], private: list[socket.socket]) -> None:
        super().__init__(config, shared)
        self.private = private
        self.processes_num = len(private)
        self.spawned_at: dict[int, float] = {}
        self.served: set[int | None] = set()  # pids of the processes that have served

    def _spawn(self, index: int) -> Process:
        process = NodeProcess(self.config, [*self.sockets, self.private[index]], node_name(index))
        process.start()
        self.spawned_at[index] = time.monotonic()
        return process

    def _starting(self, index: int, process: Process) -> bool:
        """Still within its start, so not health-checked yet: it answers pings only once its
        interpreter has imported enough to run them. Once it has served, it is checked as usual."""
        if process.pid in self.served:
            return False
        if process.is_ready(timeout=0.2):
            self.served.add(process.pid)
            return False
        young = time.monotonic() - self.spawned_at.get(index, 0.0) < STARTUP_SECONDS
        return young and process.process.is_alive()

    def init_processes(self) -> None:
        self.processes = [self._spawn(index) for index in range(self.processes_num)]

    # The two methods below follow uvicorn's own, slot by slot: a replacement must get the private
    # socket and name of the process it replaces, which uvicorn's versions cannot give it.
    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if self._starting(index, process) or process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung or gone
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before serving (app, settings or bind): every restart would fail alike.
                logger.error(f"Child process [{process.pid}] failed to start, stopping the parent process.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] ({node_name(index)}) died")
            self.processes[index] = self._spawn(index)

    def restart_all(self) -> None:
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._spawn(index)
            # The old process serves until the new one does; then it drains (SIGTERM: requests
            # in flight finish within WARDROBE_SHUTDOWN_GRACE_SECONDS) while the new one serves.
            if not new.wait_until_ready(STARTUP_SECONDS, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    logger.error(f"New child process [{new.pid}] was not ready in time; aborting the restart.")
                return
            old.terminate()
            old.join()
            self.processes[index] = new

    def handle_ttin(self) -> None:
        logger.warning("SIGTTIN ignored: the number of processes is fixed by --workers and nginx's configuration")

    def handle_ttou(self) -> None:
        logger.warning("SIGTTOU ignored: the number of processes is fixed by --workers and nginx's configuration")


def _bind(config: uvicorn.Config, port: int) -> socket.socket:
    """A listening address like the shared one (same host, uvicorn's options), on ``port``."""
    private = copy.copy(config)
    private.port = port
    return private.bind_socket()


def run(config: uvicorn.Config, ports: list[int]) -> None:
    """Serve ``config.app`` from ``len(ports)`` processes until SIGTERM/SIGINT."""
    config.http = DrainingHttpToolsProtocol
    shared = config.bind_socket()
    private = [_bind(config, port) for port in ports]
    try:
        NodeSupervisor(config, [shared], private).run()
    finally:
        for sock in (shared, *private):
            sock.close()
