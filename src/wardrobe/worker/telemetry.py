"""What ``wardrobe worker`` and ``wardrobe scheduler`` show Prometheus: ``GET /metrics`` and
``GET /health`` on WARDROBE_METRICS_HOST:WARDROBE_METRICS_PORT, and the periodic probe's gauges.

The server is a two-route ASGI app on ``uvicorn.Server``, run as a task of the process's own loop:
its /health answering proves that loop alive (a wedged loop cannot answer), and /metrics keeps the
API's token rule (a bearer WARDROBE_METRICS_TOKEN compared in constant time; open in development
without one, 404 in production). prometheus_client's own ``start_http_server`` is not used: it
serves from a thread (alive even when the loop is stuck) and has no way to check a bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wardrobe.core.db import pool_status
from wardrobe.core.envelope import error_response
from wardrobe.core.errors import ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import register_pool_collector, render_metrics
from wardrobe.settings import Environment, Settings
from wardrobe.worker.probe import ProbeParts, run_probe

log = get_logger("wardrobe.telemetry")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


def metrics_refusal(settings: Settings, authorization: str | None) -> Response | None:
    """The API's /metrics rule (modules/ops/endpoints.py), for a bare Authorization header: None
    when the scrape may read, else the answer it gets."""
    expected = settings.metrics_token.get_secret_value()
    if not expected:
        return error_response(ErrorCode.NOT_FOUND) if settings.env is Environment.PRODUCTION else None
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(ErrorCode.AUTH_REQUIRED, headers=_CHALLENGE)
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return error_response(ErrorCode.AUTH_TOKEN_INVALID, headers=_CHALLENGE)
    return None


def telemetry_app(settings: Settings, role: str) -> Starlette:
    async def metrics(request: Request) -> Response:
        refused = metrics_refusal(settings, request.headers.get("authorization"))
        if refused is not None:
            return refused
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    async def health(_: Request) -> Response:
        # Served by the process's own loop: answering at all is the proof that it runs.
        return JSONResponse({"role": role, "ok": True})

    return Starlette(routes=[Route("/metrics", metrics), Route("/health", health)])


class _QuietServer(uvicorn.Server):
    """uvicorn inside a process that owns its signals: SIGTERM stops the process (cli.py), which
    then stops this server; uvicorn must not take the handlers over."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class MetricsServer:
    def __init__(self, settings: Settings, role: str) -> None:
        self._settings = settings
        self._role = role
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None  # the bound port once started

    async def start(self) -> None:
        """Listen, if WARDROBE_METRICS_PORT is set; raises when the address cannot be bound."""
        settings = self._settings
        if not settings.metrics_port:
            return
        config = uvicorn.Config(
            telemetry_app(settings, self._role),
            host=settings.metrics_host,
            port=settings.metrics_port,
            lifespan="off",
            access_log=False,
            log_config=None,
        )
        server = self._server = _QuietServer(config)
        self._task = asyncio.create_task(server.serve(), name=f"{self._role}-metrics")
        while not server.started:
            if self._task.done():  # the address is taken, or refused
                self._task.result()
                raise RuntimeError(f"metrics server did not start on {settings.metrics_host}:{settings.metrics_port}")
            await asyncio.sleep(0.02)
        self.port = int(server.servers[0].sockets[0].getsockname()[1])
        log.info("metrics_server_started", role=self._role, host=settings.metrics_host, port=self.port)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, timeout=5)
        self._server = self._task = None


@asynccontextmanager
async def process_telemetry(parts: ProbeParts, role: str) -> AsyncIterator[MetricsServer]:
    """For the life of a worker or scheduler process: its DB pool gauges, the periodic probe, and
    the metrics server."""
    register_pool_collector(lambda: pool_status(parts.engine))
    probe = asyncio.create_task(run_probe(parts), name=f"{role}-probe")
    server = MetricsServer(parts.settings, role)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
