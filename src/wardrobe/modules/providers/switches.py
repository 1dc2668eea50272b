"""Operators' manual provider switches, read by every worker through the cache.

Off: no new call goes to the provider, steps fall back to their next candidate (or fail with
``provider_disabled`` when there is none); calls already in flight finish. The switch is in the
database (it survives restarts) and each process keeps the set of disabled slugs in its cache,
dropped everywhere by the invalidation broadcast when an operator changes it. Every change is
audited with its reason.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.audit import add_audit
from wardrobe.core.cache import Cache
from wardrobe.core.db import after_commit
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.models import ProviderSwitch
from wardrobe.models.base import utcnow
from wardrobe.modules.providers.base import ProviderRegistry

PROVIDERS = "providers"  # cache namespace


async def disabled_providers(sessions: async_sessionmaker[AsyncSession], cache: Cache) -> frozenset[str]:
    async def load() -> frozenset[str]:
        async with sessions() as session:
            rows = await session.scalars(select(ProviderSwitch.slug).where(ProviderSwitch.enabled.is_(False)))
            return frozenset(rows)

    return await cache.get(PROVIDERS, "disabled", load) or frozenset()


async def set_switch(
    session: AsyncSession, cache: Cache, slug: str, *, enabled: bool, reason: str, actor_id: int
) -> ProviderSwitch:
    switch = await session.get(ProviderSwitch, slug)
    if switch is None:
        switch = ProviderSwitch(slug=slug)
        session.add(switch)
    switch.enabled = enabled
    switch.reason = reason
    switch.updated_by = actor_id
    switch.updated_at = utcnow()
    await session.flush()
    after_commit(session, lambda: cache.invalidate(PROVIDERS))
    return switch


async def switch_provider(
    session: AsyncSession,
    cache: Cache,
    registry: ProviderRegistry,
    slug: str,
    *,
    enabled: bool,
    reason: str,
    actor_id: int,
) -> ProviderSwitch:
    """Take a provider of this deployment out of service (or back), audited with the reason.
    Raises ``NOT_FOUND`` for a slug no provider here has."""
    if registry.get(slug) is None:
        raise AppError(ErrorCode.NOT_FOUND)
    switch = await set_switch(session, cache, slug, enabled=enabled, reason=reason, actor_id=actor_id)
    add_audit(
        session,
        actor_id=actor_id,
        action="provider.enable" if enabled else "provider.disable",
        target_type="provider",
        target_id=slug,
        reason=reason,
    )
    return switch
