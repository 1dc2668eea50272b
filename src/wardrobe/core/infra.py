"""The process-wide resources every request and job needs, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache
from wardrobe.core.edge_limits import EdgeLimits
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.core.security import TokenCodec
from wardrobe.settings import Settings

if TYPE_CHECKING:
    from wardrobe.modules.auth.captcha import TencentCaptcha
    from wardrobe.modules.auth.sms_senders import SmsSender
    from wardrobe.modules.auth.wechat_client import WeChatClient
    from wardrobe.modules.payments.gateway import Payments
    from wardrobe.modules.providers.base import ProviderRegistry
    from wardrobe.modules.storage.backend import ObjectStorage
    from wardrobe.modules.tasks.presenter import TaskViews
    from wardrobe.worker.runtime import TaskRuntime


@dataclass
class Infra:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    redis: Redis | None
    limiter: RateLimiter
    edge_limits: EdgeLimits
    tokens: TokenCodec
    sms_sender: SmsSender
    wechat: WeChatClient | None
    storage: ObjectStorage
    providers: ProviderRegistry
    cache: Cache
    runtime: TaskRuntime
    payments: Payments
    task_views: TaskViews
    # Checks captcha tickets before SMS codes once a risk rule asks for one; None = captcha off.
    captcha: TencentCaptcha | None = None
