"""The process-wide resources every request and job needs, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wardrobe.core.ratelimit import RateLimiter
from wardrobe.core.security import TokenCodec
from wardrobe.settings import Settings

if TYPE_CHECKING:
    from wardrobe.modules.auth.sms_senders import SmsSender
    from wardrobe.modules.auth.wechat_client import WeChatClient


@dataclass
class Infra:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    redis: Redis | None
    limiter: RateLimiter
    tokens: TokenCodec
    sms_sender: SmsSender
    wechat: WeChatClient | None
    background: set[object] = field(default_factory=set)
