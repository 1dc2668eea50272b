"""The application factory and its lifespan: the HTTP and Socket.IO face of a process whose parts
``wardrobe.wiring`` builds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse

from wardrobe.apidocs import install_api_docs
from wardrobe.console import CONSOLE_PATH, console_app
from wardrobe.core import contract, telemetry
from wardrobe.core.db import pool_status
from wardrobe.core.edge_limits import RateLimitMiddleware
from wardrobe.core.handlers import install_exception_handlers
from wardrobe.core.heap import settle_after_startup
from wardrobe.core.json_guard import refuse_unstorable_json
from wardrobe.core.logging import configure_logging, get_logger
from wardrobe.core.metrics import register_pool_collector
from wardrobe.core.middleware import EdgeMiddleware
from wardrobe.core.openapi import operation_id
from wardrobe.modules.account.endpoints import router as account_router
from wardrobe.modules.admin.endpoints import router as admin_router
from wardrobe.modules.admin.stats.endpoints import router as stats_router
from wardrobe.modules.auth.api_key_endpoints import router as api_keys_router
from wardrobe.modules.auth.endpoints import router as auth_router
from wardrobe.modules.auth.totp_endpoints import router as totp_router
from wardrobe.modules.auth.wechat_endpoints import router as wechat_login_router
from wardrobe.modules.billing.endpoints import router as billing_router
from wardrobe.modules.billing.plan_endpoints import router as plans_router
from wardrobe.modules.catalog.endpoints import router as catalog_router
from wardrobe.modules.crypto.factory import build_key_manager
from wardrobe.modules.distributors.endpoints import router as distributors_router
from wardrobe.modules.ops.endpoints import router as ops_router
from wardrobe.modules.payments.endpoints import router as payments_router
from wardrobe.modules.payments.sandbox_endpoints import router as sandbox_payments_router
from wardrobe.modules.providers.callback_endpoints import router as callbacks_router
from wardrobe.modules.providers.endpoints import router as providers_router
from wardrobe.modules.storage.backend import OBJECTS_PATH
from wardrobe.modules.storage.endpoints import router as storage_router
from wardrobe.modules.storage.service import build_upload_services
from wardrobe.modules.tasks.admin_endpoints import router as tasks_admin_router
from wardrobe.modules.tasks.endpoints import router as tasks_router
from wardrobe.modules.webhooks.endpoints import router as webhooks_router
from wardrobe.realtime.asyncapi import router as asyncapi_router
from wardrobe.realtime.events import server_emitter
from wardrobe.realtime.http_docs import SOCKETIO_PATHS
from wardrobe.realtime.hub import DirectWebsockets, HubParts, RealtimeHub
from wardrobe.settings import Environment, Settings, get_settings
from wardrobe.webapp import APP_PATH, webapp_app
from wardrobe.webkit import KIT_PATH, kit_app
from wardrobe.wiring import (
    Infra,
    build_infra,
    close_infra,
    prepare_database,
    provider_views_reader,
    register_parts,
)
from wardrobe.worker.probe import run_probe
from wardrobe.worker.scheduler import keep_invite_pool_full, run_embedded_housekeeping

log = get_logger("wardrobe.app")
API_DESCRIPTION = (
    "Backend of the Wardrobe AI image platform. Every JSON answer is the envelope "
    "`{success, code, message, data, request_id}`; an error's `code` is one of those its response lists. "
    "Send `Authorization: Bearer <access_token>` where an operation has a security requirement. "
    'Input is taken as sent: JSON types are strict (`0` is not `false`, `"5"` is not `5`, an integer is '
    "written as one: `5`, not `5.0`), unknown fields are refused; anywhere in a JSON body, integers fit in 64 "
    "bits, numbers are finite and text is valid Unicode (no lone surrogates). `x-server-check` on a field says "
    "what the "
    "server checks beyond its schema; `x-permission` on an operation, which permission and roles it needs. "
    "Live updates: Socket.IO at `/socket.io`, described in `/asyncapi.json`."
)


async def _stop_realtime(hub: RealtimeHub) -> None:
    """Stop Socket.IO's background work with the app: the engine's service task, and the Redis
    listener of the client manager (python-socketio leaves it running), so nothing of a stopped app
    stays scheduled (or keeps the app alive) in the process."""
    await hub.sio.shutdown()
    listener = getattr(hub.sio.manager, "thread", None)
    if isinstance(listener, asyncio.Task) and not listener.done():
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener


# FastAPI matches a request against the routes one by one, router by router, and an included
# router costs about a microsecond per route it holds before a match (56 µs to reach the task list
# from ninth place, ~10 µs from first). So the routers end users call on every screen come first and
# staff, docs and health routes last. No two routes overlap, whatever the order
# (tests/core/test_route_order.py), so the order changes nothing but the cost and the order of the
# OpenAPI document's paths.
ROUTERS = (
    tasks_router,
    storage_router,
    billing_router,
    account_router,
    auth_router,
    payments_router,
    sandbox_payments_router,
    callbacks_router,
    distributors_router,
    totp_router,
    wechat_login_router,
    api_keys_router,
    webhooks_router,
    plans_router,
    tasks_admin_router,
    catalog_router,
    providers_router,
    admin_router,
    stats_router,
    ops_router,
    asyncapi_router,
)


async def _start_realtime(infra: Infra, hub: RealtimeHub) -> None:
    """Socket.IO's part of the process: the hub reads sessions and tasks, and ended sessions'
    sockets are dropped (any process's relay publishes a revocation; each drops its own)."""
    parts = HubParts(infra.session_factory, infra.tokens, infra.limiter, infra.task_views, provider_views_reader(infra))
    hub.attach(parts, infra.redis)
    infra.revocations.listen(hub.on_revoked)
    await infra.revocations.start()
    await hub.start()


def _background(infra: Infra) -> list[asyncio.Task[None]]:
    """Embedded mode's stand-ins for the scheduler and its metrics probe (never in tests: they
    would race them; tests call the probe themselves)."""
    settings = infra.settings
    if not settings.embedded or settings.env is Environment.TEST:
        return []
    return [
        asyncio.create_task(keep_invite_pool_full(infra)),
        asyncio.create_task(run_embedded_housekeeping(infra)),
        asyncio.create_task(run_probe(infra)),
    ]


def _lifespan(
    settings: Settings, hub: RealtimeHub, settle_heap: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Distributors' ID numbers; refuses the local key file in production.
        key_manager = build_key_manager(settings)
        infra = app.state.infra = build_infra(settings, emit=server_emitter(hub.sio))
        # Grants' size bounds and COS STS upload credentials: only the API hands them out.
        uploads = build_upload_services(settings, infra.redis)
        app.state.parts = register_parts(infra, uploads, key_manager)
        register_pool_collector(lambda: pool_status(infra.engine))
        await prepare_database(infra)
        await infra.cache.start()
        await _start_realtime(infra, hub)
        await infra.runtime.start()
        background = _background(infra)
        log.info("started", env=settings.env.value, db=infra.engine.dialect.name, embedded=settings.embedded)
        if settle_heap:
            settle_after_startup()
        if settings.env is Environment.PRODUCTION:
            for warning in settings.production_warnings():
                log.warning("production_warning", detail=warning)
        try:
            yield
        finally:
            for job in background:
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
            await uploads.aclose()
            await close_infra(infra)
            await infra.revocations.stop()
            await hub.stop()
            await key_manager.aclose()
            await _stop_realtime(hub)
            telemetry.shutdown()

    return lifespan


def _install_edge(app: FastAPI, settings: Settings) -> None:
    install_exception_handlers(app)
    # Added first = innermost: CORS headers are on 429s too, and the request id on everything.
    app.add_middleware(RateLimitMiddleware, trusted_proxies=settings.trusted_proxies)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_caps={OBJECTS_PATH: settings.max_upload_bytes},
    )


def create_served_app() -> FastAPI:
    """The app of `wardrobe serve` (uvicorn's factory): start-up's objects leave the collector's
    sight once it has started (core/heap.py)."""
    return create_app(settle_heap=True)


def create_app(settings: Settings | None = None, *, settle_heap: bool = False) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    # Before the parts are built: the engines and HTTP clients made afterwards are traced.
    telemetry.setup(settings.otel_endpoint, role="api", sample_ratio=settings.otel_sample_ratio)
    hub = RealtimeHub(settings)
    app = FastAPI(
        title="Wardrobe API",
        version="0.1.0",
        # Served by install_api_docs below with files from the package, not FastAPI's CDN defaults.
        docs_url=None,
        redoc_url=None,
        description=API_DESCRIPTION,
        lifespan=_lifespan(settings, hub, settle_heap),
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Before any route's own dependencies: see core/json_guard.py.
        dependencies=[Depends(refuse_unstorable_json)],
        # Readable, stable operation ids for generated clients (tasks_create, admin_orders_refund).
        generate_unique_id_function=operation_id,
    )
    contract.install(
        app,
        metrics_open=not settings.metrics_token.get_secret_value() and settings.env is not Environment.PRODUCTION,
        mounted=SOCKETIO_PATHS,
    )
    _install_edge(app, settings)
    for router in ROUTERS:
        app.include_router(router)
    install_api_docs(app, app.title)
    app.state.realtime = hub
    sockets = hub.asgi_app()
    app.mount("/socket.io", sockets)
    # Added last, so outermost of the middleware: a live socket keeps no frame of the HTTP path.
    app.add_middleware(DirectWebsockets, sockets=sockets)
    # The operator console: static files that act only through the admin API above.
    app.mount(CONSOLE_PATH, console_app())
    # The end users' web app, likewise through the public API; the site's root leads to it.
    app.mount(APP_PATH, webapp_app())
    # What the two sites share (modules, the vendored Socket.IO client), imported by absolute path.
    app.mount(KIT_PATH, kit_app())

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse(f"{APP_PATH}/", status_code=307)

    telemetry.instrument_app(app)
    return app
