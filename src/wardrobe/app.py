"""The application factory and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core import contract
from wardrobe.core.cache import Cache, Policy
from wardrobe.core.db import create_engine, create_session_factory, pool_status, unit_of_work
from wardrobe.core.deps import Parts
from wardrobe.core.edge_limits import EdgeLimits, EndpointClass, RateLimitMiddleware
from wardrobe.core.handlers import install_exception_handlers
from wardrobe.core.infra import Infra
from wardrobe.core.json_guard import refuse_unstorable_json
from wardrobe.core.logging import configure_logging, get_logger
from wardrobe.core.metrics import register_pool_collector
from wardrobe.core.middleware import EdgeMiddleware
from wardrobe.core.openapi import operation_id
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.core.redis import create_redis
from wardrobe.core.security import TokenCodec
from wardrobe.migrations import runner
from wardrobe.models.base import utcnow
from wardrobe.modules.admin.endpoints import router as admin_router
from wardrobe.modules.auth import notices
from wardrobe.modules.auth.captcha import TencentCaptcha, build_captcha
from wardrobe.modules.auth.endpoints import router as auth_router
from wardrobe.modules.auth.notices import TOPIC_SMS_NOTICE
from wardrobe.modules.auth.sms_senders import ConsoleSmsSender, SmsNotice, SmsSender, TencentSmsSender
from wardrobe.modules.auth.tokens import TOPIC_SESSIONS_REVOKED
from wardrobe.modules.auth.wechat_client import WeChatClient
from wardrobe.modules.billing import service as billing
from wardrobe.modules.billing.endpoints import router as billing_router
from wardrobe.modules.callbacks.endpoints import router as callbacks_router
from wardrobe.modules.callbacks.service import callback_payloads, callback_url, vendor_job_for
from wardrobe.modules.catalog import service as catalog
from wardrobe.modules.catalog.endpoints import router as catalog_router
from wardrobe.modules.crypto.factory import build_key_manager
from wardrobe.modules.distributors.endpoints import router as distributors_router
from wardrobe.modules.moderation.factory import build_moderator
from wardrobe.modules.moderation.moderator import Moderator
from wardrobe.modules.ops.endpoints import router as ops_router
from wardrobe.modules.payments.alipay import AlipayGateway
from wardrobe.modules.payments.endpoints import router as payments_router
from wardrobe.modules.payments.gateway import PaymentGateway
from wardrobe.modules.payments.service import Payments
from wardrobe.modules.payments.wechat import WeChatPayGateway
from wardrobe.modules.providers import switches
from wardrobe.modules.providers.accounts import ACCOUNTS, AccountDirectory, SecretBox
from wardrobe.modules.providers.base import ProviderRegistry, StepContext
from wardrobe.modules.providers.endpoints import router as providers_router
from wardrobe.modules.providers.fetch import SafeFetcher
from wardrobe.modules.providers.local import InstantProvider, LocalImageProvider
from wardrobe.modules.providers.outputs import OutputLimits, OutputTarget, store_outputs
from wardrobe.modules.providers.runninghub import OutputSink, RunningHubProvider, Workflow
from wardrobe.modules.providers.slots import MemorySlots, RedisSlots
from wardrobe.modules.realtime.asyncapi import router as asyncapi_router
from wardrobe.modules.realtime.events import TaskEvents, server_emitter
from wardrobe.modules.realtime.http_docs import SOCKETIO_PATHS
from wardrobe.modules.realtime.hub import RealtimeHub
from wardrobe.modules.realtime.revocations import RevocationBus
from wardrobe.modules.storage.backend import OBJECTS_PATH, ObjectStorage
from wardrobe.modules.storage.deps import build_storage, close_storage
from wardrobe.modules.storage.endpoints import router as storage_router
from wardrobe.modules.storage.service import build_upload_services
from wardrobe.modules.tasks.endpoints import router as tasks_router
from wardrobe.modules.users import invite_codes
from wardrobe.modules.users.endpoints import router as users_router
from wardrobe.scheduler import run_embedded_housekeeping
from wardrobe.seed import seed_demo_data
from wardrobe.settings import Environment, Settings, SmsBackend, get_settings
from wardrobe.worker.runtime import TaskRuntime

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
INVITE_POOL_CHECK_SECONDS = 60.0


def build_sms_sender(settings: Settings) -> SmsSender:
    if settings.sms_backend is SmsBackend.TENCENT:
        return TencentSmsSender(
            secret_id=settings.tencent_secret_id,
            secret_key=settings.tencent_secret_key.get_secret_value(),
            region=settings.tencent_region,
            sdk_app_id=settings.tencent_sms_sdk_app_id,
            sign_name=settings.tencent_sms_sign_name,
            template_id=settings.tencent_sms_template_id,
            notice_templates={SmsNotice.PHONE_CHANGED: settings.tencent_sms_phone_changed_template_id},
            endpoint=settings.tencent_sms_endpoint or None,
            scheme=settings.tencent_sms_scheme,
        )
    return ConsoleSmsSender()


def build_vendor_outputs(settings: Settings, storage: ObjectStorage) -> OutputSink:
    """How vendor output URLs become objects of ours: fetched SSRF-safe, checked like uploads,
    stored under ``results/`` at keys fixed by task, step, attempt and index."""
    fetcher = SafeFetcher(allow_private=settings.vendor_output_allow_private)
    limits = OutputLimits(
        max_bytes=settings.vendor_output_max_bytes,
        timeout_seconds=settings.vendor_output_timeout_seconds,
        max_pixels=settings.max_image_pixels,
    )

    async def sink(files: list[dict[str, Any]], ctx: StepContext) -> dict[str, Any]:
        target = OutputTarget(
            user_id=ctx.user_id,
            task_id=ctx.task_id,
            step_id=ctx.step_id,
            attempt=ctx.attempt,
            at=ctx.started_at or utcnow(),
        )
        urls = [str(f["fileUrl"]) for f in files]
        stored = await store_outputs(urls, target, fetcher=fetcher, storage=storage, limits=limits)
        images = [{"object_key": s.key, "content_type": s.content_type} for s in stored]
        return {"image": images[0], "images": images}

    return sink


def build_providers(
    settings: Settings, storage: ObjectStorage, sessions: async_sessionmaker[AsyncSession] | None = None
) -> ProviderRegistry:
    """The local providers, the vendors configured in settings (RunningHub, Hunyuan), plus any
    listed in WARDROBE_EXTRA_PROVIDERS as "module:factory" (returning one provider or a list)."""
    registry = ProviderRegistry()
    registry.register(LocalImageProvider(storage, max_pixels=settings.max_image_pixels))
    registry.register(InstantProvider())
    runninghub_key = settings.runninghub_api_key.get_secret_value()
    if runninghub_key:
        registry.register(
            RunningHubProvider(
                api_key=runninghub_key,
                workflows={a: Workflow.from_config(w) for a, w in settings.runninghub_workflows.items()},
                storage=storage,
                base_url=settings.runninghub_base_url,
                timeout_seconds=settings.vendor_timeout_seconds,
                callback_url=functools.partial(callback_url, settings, "runninghub"),
                find_job=(functools.partial(vendor_job_for, sessions, "runninghub") if sessions is not None else None),
                outputs=build_vendor_outputs(settings, storage),
            )
        )
    if settings.tencent_imaging_enabled:
        from wardrobe.modules.providers.tencent_imaging import TencentImagingProvider

        registry.register(
            TencentImagingProvider(
                secret_id=settings.tencent_secret_id,
                secret_key=settings.tencent_secret_key.get_secret_value(),
                storage=storage,
                region=settings.tencent_imaging_region,
                endpoint=settings.tencent_imaging_endpoint or None,
                scheme=settings.tencent_imaging_scheme,
                timeout=settings.vendor_timeout_seconds,
                max_pixels=settings.max_image_pixels,
            )
        )
    if settings.scf_enabled and sessions is not None:
        from wardrobe.modules.providers.scf import ScfProvider, functions_from_config

        registry.register(
            ScfProvider(
                secret_id=settings.tencent_secret_id,
                secret_key=settings.tencent_secret_key.get_secret_value(),
                functions=functions_from_config(settings.scf_functions),
                callback_key=settings.scf_callback_key.get_secret_value(),
                callback_url=functools.partial(callback_url, settings, "scf"),
                inbox=functools.partial(callback_payloads, sessions, "scf"),
                region=settings.scf_region,
                endpoint=settings.scf_endpoint or None,
                scheme=settings.scf_scheme,
                outputs=build_vendor_outputs(settings, storage),
            )
        )
    if settings.hunyuan_enabled:
        # Imported only when used: the Tencent Cloud SDK is heavy for processes that do not need it.
        from wardrobe.modules.providers.hunyuan import HunyuanProvider

        registry.register(
            HunyuanProvider(
                secret_id=settings.tencent_secret_id,
                secret_key=settings.tencent_secret_key.get_secret_value(),
                region=settings.hunyuan_region,
                endpoint=settings.hunyuan_endpoint or None,
                scheme=settings.hunyuan_scheme,
                timeout=min(settings.vendor_timeout_seconds, 30.0),
            )
        )
    for spec in settings.extra_providers:
        module_name, _, attr = spec.partition(":")
        made = getattr(importlib.import_module(module_name), attr)()
        for provider in made if isinstance(made, list) else [made]:
            registry.register(provider)
    return registry


def _key_text(value: str) -> str:
    """A key given inline (PEM or bare base64) or as the path of a file holding it."""
    value = value.strip()
    if value and not value.startswith("-----BEGIN") and Path(value).is_file():
        return Path(value).read_text()
    return value


def build_payments(settings: Settings) -> Payments:
    """The platforms configured in settings; a channel whose platform is not configured answers
    PAYMENT_CHANNEL_UNAVAILABLE."""
    gateways: dict[str, PaymentGateway] = {}
    if settings.wechatpay_mchid:
        gateways["wechat"] = WeChatPayGateway(
            mchid=settings.wechatpay_mchid,
            appid=settings.wechatpay_appid or settings.wechat_appid,
            cert_serial_no=settings.wechatpay_cert_serial,
            private_key=_key_text(settings.wechatpay_private_key.get_secret_value()),
            apiv3_key=settings.wechatpay_apiv3_key.get_secret_value(),
            public_key=_key_text(settings.wechatpay_public_key.get_secret_value()),
            public_key_id=settings.wechatpay_public_key_id,
            api_base=settings.wechatpay_api_base,
            timeout=settings.payment_timeout_seconds,
        )
    if settings.alipay_app_id:
        gateways["alipay"] = AlipayGateway(
            app_id=settings.alipay_app_id,
            private_key=_key_text(settings.alipay_private_key.get_secret_value()),
            alipay_public_key=_key_text(settings.alipay_public_key.get_secret_value()),
            seller_id=settings.alipay_seller_id,
            gateway=settings.alipay_gateway,
            return_url=settings.alipay_return_url,
            timeout=settings.payment_timeout_seconds,
        )
    return Payments(gateways=gateways, notify_base_url=settings.payment_notify_base_url)


def build_cache(settings: Settings, redis: Redis | None) -> Cache:
    policy = Policy(
        ttl=settings.cache_ttl_seconds,
        negative_ttl=settings.cache_negative_ttl_seconds,
        jitter=settings.cache_ttl_jitter,
    )
    cached = (catalog.CATALOG, catalog.PIPELINE, billing.PLANS, billing.MEMBERSHIP, switches.PROVIDERS, ACCOUNTS)
    return Cache(redis, settings.redis_key_prefix, dict.fromkeys(cached, policy))


def build_infra(settings: Settings, *, consume_tasks: bool | None = None, dedicated_worker: bool = False) -> Infra:
    """Everything a process needs. ``consume_tasks``: whether this process executes tasks
    (default: the API does in embedded mode; `wardrobe worker` always does)."""
    engine = create_engine(settings)
    redis = create_redis(settings)
    limiter = RateLimiter.for_redis(redis, settings.redis_key_prefix) if redis is not None else RateLimiter.in_memory()
    wechat = None
    if settings.wechat_appid:
        wechat = WeChatClient(
            appid=settings.wechat_appid,
            secret=settings.wechat_secret.get_secret_value(),
            base_url=settings.wechat_api_base,
            timeout=settings.wechat_timeout_seconds,
            redis=redis,
            cache_key_prefix=settings.redis_key_prefix,
        )
    session_factory = create_session_factory(engine)
    storage = build_storage(settings)
    providers = build_providers(settings, storage, session_factory)
    cache = build_cache(settings, redis)
    consume = settings.runs_worker_in_process if consume_tasks is None else consume_tasks
    infra = Infra(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        redis=redis,
        limiter=limiter,
        edge_limits=EdgeLimits(
            enabled=settings.rate_limits_enabled,
            per_ip=settings.rate_limit_per_ip,
            per_user=settings.rate_limit_per_user,
            per_class={
                EndpointClass.AUTH: settings.rate_limit_auth,
                EndpointClass.TASK_CREATE: settings.rate_limit_task_create,
                EndpointClass.WRITE: settings.rate_limit_write,
            },
        ),
        tokens=TokenCodec(
            settings.jwt_secret.get_secret_value(),
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.access_token_ttl_seconds,
        ),
        sms_sender=build_sms_sender(settings),
        captcha=build_captcha(settings),
        wechat=wechat,
        storage=storage,
        providers=providers,
        cache=cache,
        payments=build_payments(settings),
        runtime=TaskRuntime(
            settings,
            session_factory,
            providers,
            consume=consume,
            slots=RedisSlots(redis, settings.redis_key_prefix) if redis is not None else MemorySlots(),
            redis=redis,
            limiter=limiter,
            dedicated=dedicated_worker,
            disabled=functools.partial(switches.disabled_providers, session_factory, cache),
            storage=storage,  # a task's intermediates are deleted when it ends
            # Vendor accounts operators configure in the database (several per provider, load-balanced).
            accounts=AccountDirectory(
                session_factory, cache, SecretBox(settings.provider_secrets_key.get_secret_value())
            ),
            # One moderator for task creation (prompts) and the engine (uploads, outputs).
            moderator=_moderator(settings, storage),
        ),
    )
    # Account notices (the old number after a phone change) go out through any process's relay.
    infra.runtime.publishers[TOPIC_SMS_NOTICE] = functools.partial(
        notices.deliver, infra.sms_sender, settings.sms_backend.value
    )
    return infra


def register_parts(infra: Infra) -> Parts:
    """The parts request code may ask for by type (core/deps.py)."""
    parts = Parts()
    for kind, value in (
        (Settings, infra.settings),
        (async_sessionmaker, infra.session_factory),
        (Redis, infra.redis),
        (RateLimiter, infra.limiter),
        (EdgeLimits, infra.edge_limits),
        (TokenCodec, infra.tokens),
        (Cache, infra.cache),
        (SmsSender, infra.sms_sender),
        (WeChatClient, infra.wechat),
        (TencentCaptcha, infra.captcha),
        (ObjectStorage, infra.storage),
        (ProviderRegistry, infra.providers),
        (Payments, infra.payments),
        (Moderator, infra.runtime.engine.moderator),
    ):
        parts.add(kind, value)
    return parts


def _moderator(settings: Settings, storage: ObjectStorage) -> Moderator:
    return build_moderator(
        backend=settings.moderation_backend,
        storage=storage,
        keywords_file=settings.moderation_keywords_file or None,
        secret_id=settings.tencent_secret_id,
        secret_key=settings.tencent_secret_key.get_secret_value(),
        region=settings.moderation_region,
        endpoint=settings.moderation_endpoint or None,
        scheme=settings.moderation_scheme,
        text_biz_type=settings.moderation_text_biz_type or None,
        image_biz_type=settings.moderation_image_biz_type or None,
        timeout=settings.moderation_timeout_seconds,
        review_blocks=settings.moderation_review_blocks,
        outage_attempts=settings.moderation_outage_attempts,
        outage_backoff_seconds=settings.moderation_outage_backoff_seconds,
    )


async def prepare_database(infra: Infra) -> None:
    """Migrate and seed when configured to (the embedded default does both on first start)."""
    settings = infra.settings
    if settings.auto_migrate:
        await runner.upgrade(infra.engine)
    if settings.seed_demo_data and settings.env is not Environment.PRODUCTION:
        async with unit_of_work(infra.session_factory) as session:
            await seed_demo_data(session, settings, infra.providers)


async def keep_invite_pool_full(infra: Infra) -> None:
    """Embedded mode's stand-in for the scheduler: top the invite pool up now and then."""
    while True:
        try:
            async with unit_of_work(infra.session_factory) as session:
                await invite_codes.refill_pool(
                    session, infra.settings.invite_pool_target, infra.settings.invite_code_length
                )
        except Exception:
            log.exception("invite_pool_refill_failed")
        await asyncio.sleep(INVITE_POOL_CHECK_SECONDS)


async def close_infra(infra: Infra) -> None:
    await infra.runtime.stop()
    await infra.runtime.engine.moderator.aclose()
    await infra.payments.aclose()
    await infra.cache.stop()
    await infra.sms_sender.aclose()
    if infra.captcha is not None:
        await infra.captcha.aclose()
    await close_storage(infra.storage)
    if infra.wechat is not None:
        await infra.wechat.aclose()
    if infra.redis is not None:
        await infra.redis.aclose()
    await infra.engine.dispose()


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


ROUTERS = (
    ops_router,
    auth_router,
    users_router,
    billing_router,
    payments_router,
    tasks_router,
    catalog_router,
    providers_router,
    callbacks_router,
    storage_router,
    distributors_router,
    admin_router,
    asyncapi_router,
)


async def _start_realtime(infra: Infra, hub: RealtimeHub) -> RevocationBus:
    """Socket.IO's part of a process: pushes through its server, and ended sessions' sockets
    dropped (any process's relay publishes a revocation; each drops its own sockets)."""
    hub.attach(infra)
    infra.runtime.events = TaskEvents(infra, server_emitter(hub.sio))
    revocations = RevocationBus(infra.redis, infra.settings.redis_key_prefix)
    revocations.listen(hub.on_revoked)
    infra.runtime.publishers[TOPIC_SESSIONS_REVOKED] = revocations.publish
    await revocations.start()
    await hub.start()
    return revocations


def _background(infra: Infra) -> list[asyncio.Task[None]]:
    """Embedded mode's stand-ins for the scheduler (never in tests: they would race them)."""
    settings = infra.settings
    if not settings.embedded or settings.env is Environment.TEST:
        return []
    return [asyncio.create_task(keep_invite_pool_full(infra)), asyncio.create_task(run_embedded_housekeeping(infra))]


def _lifespan(settings: Settings, hub: RealtimeHub) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Distributors' ID numbers; refuses the local key file in production.
        key_manager = app.state.key_manager = build_key_manager(settings)
        infra = app.state.infra = build_infra(settings)
        app.state.parts = register_parts(infra)
        # Grants' size bounds and COS STS upload credentials: only the API hands them out.
        uploads = app.state.uploads = build_upload_services(settings, infra.redis)
        register_pool_collector(lambda: pool_status(infra.engine))
        await prepare_database(infra)
        await infra.cache.start()
        revocations = await _start_realtime(infra, hub)
        await infra.runtime.start()
        background = _background(infra)
        log.info("started", env=settings.env.value, db=infra.engine.dialect.name, embedded=settings.embedded)
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
            await revocations.stop()
            await hub.stop()
            await key_manager.aclose()
            await _stop_realtime(hub)

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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    hub = RealtimeHub(settings)
    app = FastAPI(
        title="Wardrobe API",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=_lifespan(settings, hub),
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
    app.state.realtime = hub
    app.mount("/socket.io", hub.asgi_app())
    return app
