"""The parts the account rules use besides the request's session, as one typed record.

Login, codes, proofs of identity and token rotation share the same handful of collaborators; one
narrow record keeps their signatures short without handing them the whole process (the payment
gateways, the task runtime, storage). Built once per process (wardrobe.wiring) and taken by routes
through ``AccountPartsDep``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.deps import part
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.core.security import TokenCodec
from wardrobe.modules.auth.captcha import TencentCaptcha
from wardrobe.modules.auth.sms_senders import SmsSender
from wardrobe.modules.auth.wechat_client import WeChatClient
from wardrobe.modules.auth.wechat_oauth import WeChatOAuthApps
from wardrobe.settings import Settings


@dataclass(frozen=True, slots=True)
class AccountParts:
    settings: Settings
    # For the writes that must survive the request's rollback (a counted wrong guess, a revocation).
    session_factory: async_sessionmaker[AsyncSession]
    limiter: RateLimiter
    tokens: TokenCodec
    sms_sender: SmsSender
    wechat: WeChatClient | None  # None when no mini program is configured
    wechat_oauth: WeChatOAuthApps  # the website and mobile apps, each None when not configured
    captcha: TencentCaptcha | None  # None when captcha is off


AccountPartsDep = Annotated[AccountParts, Depends(part(AccountParts))]
