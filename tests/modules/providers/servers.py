"""Small servers on the test's own event loop for the download tests: a canary that only counts
connections, and an HTTP/1.1 server whose bytes the test writes itself (lying headers, endless
bodies, stalls), which uvicorn would refuse to send."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest


class Canary:
    """A listener that must never be reached. ``accepted`` counts every connection it accepts.

    ``confirm_count()`` makes one connection of its own and waits until the canary has seen it:
    connections are accepted in arrival order, so once the control one is counted every earlier
    one has been too. Zero unexpected connections means the count is exactly 1 after that.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.accepted = 0
        self._control_seen = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self.host, 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1  # before any await: counted in accept order
        with contextlib.suppress(OSError):
            if await reader.read(7) == b"control":
                self._control_seen.set()
        writer.close()

    async def confirm_count(self) -> int:
        """The number of connections other than the control one, all of them accounted for."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        _, writer = await asyncio.open_connection(self.host, self.port, family=family)
        writer.write(b"control")
        await writer.drain()
        await asyncio.wait_for(self._control_seen.wait(), 10)
        writer.close()
        return self.accepted - 1


@dataclass
class Exchange:
    """What a ``RawHTTPServer`` handler sees: the request head and the stream to answer on."""

    head: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def path(self) -> str:
        return self.head.split(b" ", 2)[1].decode()

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode()
        return None

    async def respond(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()


Handler = Callable[[Exchange], Awaitable[None]]


@dataclass
class RawHTTPServer:
    """One HTTP/1.1 request per connection, answered by ``handler``. ``release`` is set when the
    test ends, so handlers that stall (``await server.release.wait()``) end with it."""

    handler: Handler
    host: str = "127.0.0.1"
    requests: list[Exchange] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[BaseException] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            exchange = Exchange(head, reader, writer)
            self.requests.append(exchange)
            await self.handler(exchange)
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.errors.append(exc)
        finally:
            writer.close()
            self.finished.set()


@contextlib.asynccontextmanager
async def raw_http_server(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[RawHTTPServer]:
    server = RawHTTPServer(handler, host)
    server._server = await asyncio.start_server(server._on_connect, host, 0)
    try:
        yield server
    finally:
        server.release.set()
        server._server.close()
        await server._server.wait_closed()


@contextlib.asynccontextmanager
async def canary(host: str) -> AsyncIterator[Canary]:
    listener = Canary(host)
    try:
        await listener.start()
    except OSError as exc:
        pytest.fail(f"cannot listen on {host}: {exc!r}")
    try:
        yield listener
    finally:
        await listener.stop()
