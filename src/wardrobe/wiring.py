"""Builds every part of a process once, each given its collaborators when it is made.

The API (app.py), ``wardrobe worker`` and ``wardrobe scheduler`` (cli.py) and the benchmarks build
their process here, so that there is one place where settings turn into parts and parts meet: an
adapter, a gateway or the engine never reaches for a collaborator itself, and nothing is attached
to a part after it is built. ``Infra`` is the record of a process's parts; only the entry points
read it. Request code takes the parts it uses through ``core/deps.py``, which reads them through
``register_parts``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache, Policy
from wardrobe.core.db import create_engine, create_session_factory, finish, unit_of_work
from wardrobe.core.deps import Parts
from wardrobe.core.edge_limits import EdgeLimits, EndpointClass
from wardrobe.core.outbox import TOPIC_WEBHOOK, Announcer
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.core.redis import create_redis
from wardrobe.core.security import TokenCodec
from wardrobe.migrations import runner
from wardrobe.models.base import utcnow
from wardrobe.modules.admin.stats import service as stats
from wardrobe.modules.auth import notices
from wardrobe.modules.auth.captcha import TencentCaptcha, build_captcha
from wardrobe.modules.auth.notices import TOPIC_SMS_NOTICE
from wardrobe.modules.auth.parts import AccountParts
from wardrobe.modules.auth.sms_senders import ConsoleSmsSender, SmsNotice, SmsSender, TencentSmsSender
from wardrobe.modules.auth.tokens import TOPIC_SESSIONS_REVOKED
from wardrobe.modules.auth.wechat_client import WeChatClient
from wardrobe.modules.auth.wechat_oauth import WeChatOAuthApps, WeChatOAuthClient
from wardrobe.modules.billing import plans as billing_plans
from wardrobe.modules.billing import service as billing
from wardrobe.modules.catalog import service as catalog
from wardrobe.modules.crypto.keys import KeyManager
from wardrobe.modules.moderation.factory import build_moderator
from wardrobe.modules.moderation.moderator import Moderator
from wardrobe.modules.payments.alipay import AlipayGateway
from wardrobe.modules.payments.gateway import PaymentGateway, Payments
from wardrobe.modules.payments.sandbox import SandboxGateway, sandbox_key
from wardrobe.modules.payments.wechat import WeChatPayGateway
from wardrobe.modules.providers import service as providers_service
from wardrobe.modules.providers import switches
from wardrobe.modules.providers.accounts import ACCOUNTS, AccountDirectory, SecretBox
from wardrobe.modules.providers.adapters.local import InstantProvider, LocalImageProvider
from wardrobe.modules.providers.adapters.runninghub import OutputSink, RunningHubProvider, Workflow
from wardrobe.modules.providers.base import ProviderRegistry, StepContext
from wardrobe.modules.providers.callback_hints import CallbackHints
from wardrobe.modules.providers.callbacks import callback_payloads, callback_url, vendor_job_for
from wardrobe.modules.providers.fetch import SafeFetcher
from wardrobe.modules.providers.health import ProviderHealth
from wardrobe.modules.providers.outputs import OutputLimits, OutputTarget, store_outputs
from wardrobe.modules.providers.slots import MemorySlots, RedisSlots, SlotStore
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.storage.deps import build_storage, close_storage
from wardrobe.modules.storage.service import UploadServices
from wardrobe.modules.tasks.parts import TaskParts
from wardrobe.modules.tasks.presenter import TaskViews
from wardrobe.modules.webhooks.sender import WebhookSender
from wardrobe.realtime.events import Emit, TaskEvents
from wardrobe.realtime.revocations import RevocationBus
from wardrobe.seed import seed_demo_data
from wardrobe.settings import Environment, Settings, SmsBackend
from wardrobe.worker.runtime import TaskRuntime

# What publishes one outbox topic's messages (its payload) in this process.
Publisher = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Infra:
    """Every part of one process (flat: a part's collaborators are its own business)."""

    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    redis: Redis | None  # None in the embedded default
    limiter: RateLimiter
    edge_limits: EdgeLimits
    tokens: TokenCodec
    sms_sender: SmsSender
    wechat: WeChatClient | None  # None without a mini program
    wechat_oauth: WeChatOAuthApps
    captcha: TencentCaptcha | None  # None while captcha is off
    storage: ObjectStorage
    providers: ProviderRegistry
    cache: Cache
    payments: Payments
    task_views: TaskViews
    announcer: Announcer
    revocations: RevocationBus
    runtime: TaskRuntime


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
        from wardrobe.modules.providers.adapters.tencent_imaging import TencentImagingProvider

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
        from wardrobe.modules.providers.adapters.scf import ScfProvider, functions_from_config

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
        from wardrobe.modules.providers.adapters.hunyuan import HunyuanProvider

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
    if settings.sandbox_payments_enabled:
        gateways["sandbox"] = SandboxGateway(sandbox_key(settings.jwt_secret.get_secret_value()))
    return Payments(gateways=gateways, notify_base_url=settings.payment_notify_base_url)


def build_cache(settings: Settings, redis: Redis | None) -> Cache:
    policy = Policy(
        ttl=settings.cache_ttl_seconds,
        negative_ttl=settings.cache_negative_ttl_seconds,
        jitter=settings.cache_ttl_jitter,
    )
    cached = (catalog.CATALOG, catalog.PIPELINE, billing_plans.PLANS, billing.MEMBERSHIP, switches.PROVIDERS, ACCOUNTS)
    policies = dict.fromkeys(cached, policy)
    # Keys name the exact rollup state they were computed from: the TTL only bounds memory.
    policies[stats.ACTIVE_USERS_CACHE] = Policy(ttl=3600)
    return Cache(redis, settings.redis_key_prefix, policies)


def _relayed(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession], sms_sender: SmsSender
) -> tuple[WebhookSender, dict[str, Publisher]]:
    """What any process's relay publishes: account notices (the old number after a phone change)
    and webhook deliveries, recorded here and sent by the processes that run tasks."""
    webhooks = WebhookSender(session_factory, settings)
    return webhooks, {
        TOPIC_SMS_NOTICE: functools.partial(notices.deliver, sms_sender, settings.sms_backend.value),
        TOPIC_WEBHOOK: webhooks.publish,
    }


def build_infra(
    settings: Settings,
    *,
    consume_tasks: bool | None = None,
    dedicated_worker: bool = False,
    emit: Emit | None = None,
) -> Infra:
    """Everything a process needs. ``consume_tasks``: whether this process executes tasks
    (default: the API does in embedded mode; `wardrobe worker` always does). ``emit``: how this
    process pushes to Socket.IO clients (the API's server, a worker's write-only manager); a
    process without it pushes nothing and leaves revocations to those that can drop sockets."""
    engine = create_engine(settings)
    redis = create_redis(settings)
    limiter = RateLimiter.for_redis(redis, settings.redis_key_prefix) if redis is not None else RateLimiter.in_memory()
    session_factory = create_session_factory(engine)
    storage = build_storage(settings)
    cache = build_cache(settings, redis)
    task_views = TaskViews(storage, settings.download_url_ttl_seconds)
    sms_sender = build_sms_sender(settings)
    revocations = RevocationBus(redis, settings.redis_key_prefix)
    webhooks, publishers = _relayed(settings, session_factory, sms_sender)
    events = None
    if emit is not None:
        events = TaskEvents(session_factory, task_views, emit)
        # Whichever process's relay takes a revocation publishes it to every API process.
        publishers[TOPIC_SESSIONS_REVOKED] = revocations.publish
    providers = build_providers(settings, storage, session_factory)
    # Vendor accounts operators configure in the database (several per provider, load-balanced).
    accounts = AccountDirectory(session_factory, cache, SecretBox(settings.provider_secrets_key.get_secret_value()))
    # One moderator for task creation (prompts) and the engine (uploads, outputs).
    moderator = build_process_moderator(settings, storage)
    announcer = Announcer()
    runtime = TaskRuntime(
        settings,
        session_factory,
        providers,
        consume=settings.runs_worker_in_process if consume_tasks is None else consume_tasks,
        slots=RedisSlots(redis, settings.redis_key_prefix) if redis is not None else MemorySlots(),
        redis=redis,
        limiter=limiter,
        dedicated=dedicated_worker,
        disabled=functools.partial(switches.disabled_providers, session_factory, cache),
        announcer=announcer,
        events=events,
        publishers=publishers,
        storage=storage,  # a task's intermediates are deleted when it ends
        accounts=accounts,
        moderator=moderator,
        webhooks=webhooks,
    )
    return Infra(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        redis=redis,
        limiter=limiter,
        edge_limits=build_edge_limits(settings),
        tokens=TokenCodec(
            settings.jwt_secret.get_secret_value(),
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.access_token_ttl_seconds,
            previous=[old.get_secret_value() for old in settings.jwt_previous_secrets],
        ),
        sms_sender=sms_sender,
        wechat=build_wechat(settings, redis),
        wechat_oauth=build_wechat_oauth(settings),
        captcha=build_captcha(settings),
        storage=storage,
        providers=providers,
        cache=cache,
        payments=build_payments(settings),
        task_views=task_views,
        announcer=announcer,
        revocations=revocations,
        runtime=runtime,
    )


def build_edge_limits(settings: Settings) -> EdgeLimits:
    return EdgeLimits(
        enabled=settings.rate_limits_enabled,
        per_ip=settings.rate_limit_per_ip,
        per_user=settings.rate_limit_per_user,
        per_class={
            EndpointClass.AUTH: settings.rate_limit_auth,
            EndpointClass.TASK_CREATE: settings.rate_limit_task_create,
            EndpointClass.WRITE: settings.rate_limit_write,
        },
    )


def build_wechat(settings: Settings, redis: Redis | None) -> WeChatClient | None:
    if not settings.wechat_appid:
        return None
    return WeChatClient(
        appid=settings.wechat_appid,
        secret=settings.wechat_secret.get_secret_value(),
        base_url=settings.wechat_api_base,
        timeout=settings.wechat_timeout_seconds,
        redis=redis,
        cache_key_prefix=settings.redis_key_prefix,
    )


def build_wechat_oauth(settings: Settings) -> WeChatOAuthApps:
    def client(appid: str, secret: str) -> WeChatOAuthClient | None:
        if not appid:
            return None
        return WeChatOAuthClient(
            appid,
            secret,
            base_url=settings.wechat_api_base,
            timeout=settings.wechat_timeout_seconds,
            open_base_url=settings.wechat_open_base,
        )

    return WeChatOAuthApps(
        web=client(settings.wechat_web_appid, settings.wechat_web_secret.get_secret_value()),
        mobile=client(settings.wechat_mobile_appid, settings.wechat_mobile_secret.get_secret_value()),
    )


def register_parts(infra: Infra, uploads: UploadServices, key_manager: KeyManager) -> Parts:
    """The parts request code may ask for by type (core/deps.py), each read from ``infra`` when
    a request asks, so that what replaces a part on the record reaches the next request."""
    parts = Parts()
    plain: dict[object, str] = {
        Settings: "settings",
        async_sessionmaker: "session_factory",
        AsyncEngine: "engine",
        Redis: "redis",
        RateLimiter: "limiter",
        EdgeLimits: "edge_limits",
        TokenCodec: "tokens",
        Cache: "cache",
        SmsSender: "sms_sender",
        WeChatClient: "wechat",
        TencentCaptcha: "captcha",
        ObjectStorage: "storage",
        ProviderRegistry: "providers",
        Payments: "payments",
        TaskViews: "task_views",
        Announcer: "announcer",
    }
    for kind, name in plain.items():
        parts.provide(kind, functools.partial(getattr, infra, name))
    parts.provide(UploadServices, lambda: uploads)
    parts.provide(KeyManager, lambda: key_manager)
    # The providers' parts are those the engine works with: operators see its slots and breakers,
    # and a callback wakes the steps its runs poll.
    health = provider_health(infra)
    # The engine's own vendor accounts and moderator: one of each per process, which the runs and
    # the routes share.
    parts.provide(AccountDirectory, lambda: infra.runtime.engine.accounts)
    parts.provide(Moderator, lambda: infra.runtime.engine.moderator)
    parts.provide(SlotStore, lambda: infra.runtime.engine.slots)
    parts.provide(ProviderHealth, lambda: health)
    parts.provide(CallbackHints, lambda: infra.runtime.hints)
    parts.provide(AccountParts, lambda: account_parts(infra))
    parts.provide(TaskParts, lambda: task_parts(infra))
    return parts


def provider_health(infra: Infra) -> ProviderHealth:
    """What operators see of the providers' health: what the engine's breakers publish."""
    return ProviderHealth(infra.redis, infra.runtime.health_key, infra.runtime.engine.breaker)


def provider_views_reader(infra: Infra) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """Reads the provider views of GET /api/v1/admin/providers (for the hub's provider.health)."""
    health = provider_health(infra)

    async def read() -> list[dict[str, Any]]:
        async with infra.session_factory() as session:
            views = await providers_service.provider_views(
                session, infra.providers, infra.settings.provider_concurrency, infra.runtime.engine.slots, health
            )
            await finish(session)
        return views

    return read


def account_parts(infra: Infra) -> AccountParts:
    return AccountParts(
        settings=infra.settings,
        session_factory=infra.session_factory,
        limiter=infra.limiter,
        tokens=infra.tokens,
        sms_sender=infra.sms_sender,
        wechat=infra.wechat,
        wechat_oauth=infra.wechat_oauth,
        captcha=infra.captcha,
    )


def task_parts(infra: Infra) -> TaskParts:
    return TaskParts(
        settings=infra.settings,
        cache=infra.cache,
        limiter=infra.limiter,
        storage=infra.storage,
        moderator=infra.runtime.engine.moderator,
        announcer=infra.announcer,
    )


def build_process_moderator(settings: Settings, storage: ObjectStorage) -> Moderator:
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
    await infra.wechat_oauth.aclose()
    if infra.redis is not None:
        await infra.redis.aclose()
    await infra.engine.dispose()
