"""Run an ASGI app under uvicorn in a background thread so tests talk to it over real HTTP.

Vendor SDKs build their own HTTP clients (the Tencent Cloud SDK creates an ``httpx.AsyncClient``
with the endpoint as the signed ``Host``), so an in-process ASGI transport is not enough: the peers
have to listen on a real socket.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

_HOST = "127.0.0.1"


class _SignallingServer(uvicorn.Server):
    """A uvicorn server that wakes the starting thread once startup has finished.

    ``Server.started`` is a plain attribute; signalling an event after ``startup`` lets the test
    thread block on it instead of polling.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_finished = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            # Set on failure too (uvicorn raises SystemExit), so the waiter fails fast.
            self.startup_finished.set()


class PeerServer:
    """Serve ``app`` on 127.0.0.1 with an OS-chosen port for the duration of a ``with`` block."""

    def __init__(self, app: ASGIApp, *, startup_timeout: float = 10.0, shutdown_timeout: float = 10.0) -> None:
        self._app = app
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        self._socket: socket.socket | None = None
        self._server: _SignallingServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def app(self) -> ASGIApp:
        return self._app

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PeerServer is not running")
        return self._port

    @property
    def host_port(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host_port}"

    def __enter__(self) -> Self:
        # Binding the socket ourselves gives the port before the server starts and leaves no
        # window in which another process could grab a port we picked and released.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((_HOST, 0))
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_config=None,  # leave the test process's logging configuration alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(self._shutdown_timeout),
        )
        server = _SignallingServer(config)
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"peer-server-{self._port}", daemon=True
        )
        self._thread = thread
        thread.start()
        if not server.startup_finished.wait(self._startup_timeout) or not server.started:
            self._stop()
            raise RuntimeError(f"peer server on port {self._port} did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(self._shutdown_timeout + 5)
            if self._thread.is_alive():
                # Make a hung shutdown visible rather than leaking a serving thread silently.
                raise RuntimeError(f"peer server on port {self._port} did not stop")
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None
        self._port = None
