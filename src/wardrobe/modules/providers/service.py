"""What operators see of the providers: shape, switch, concurrency in use, health and accounts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import ProviderAccount
from wardrobe.modules.providers import account_admin, repository
from wardrobe.modules.providers.base import AsyncProvider, ProviderRegistry
from wardrobe.modules.providers.health import ProviderHealth
from wardrobe.modules.providers.slots import SlotStore


async def provider_views(
    session: AsyncSession,
    registry: ProviderRegistry,
    limits: Mapping[str, int],
    slots: SlotStore,
    health: ProviderHealth,
) -> list[dict[str, Any]]:
    """Every provider of this deployment with its switch, its concurrency limit (``limits``) and
    slots in use, its health, its latest failed steps and its accounts."""
    states = await health.snapshot()
    switched = await repository.switches(session)
    accounts = await repository.accounts_by_provider(session)
    items = []
    for slug in registry.slugs():
        provider = registry.get(slug)
        switch = switched.get(slug)
        off = switch is not None and not switch.enabled
        items.append(
            {
                "slug": slug,
                "kind": "async" if isinstance(provider, AsyncProvider) else "sync",
                "enabled": not off,
                "disabled_reason": switch.reason if off and switch is not None else None,
                "concurrency_limit": limits.get(slug),
                "in_use": await slots.in_use(slug),
                "health": states.get(slug, {"state": "up", "recent_calls": 0}),
                "recent_failures": await repository.recent_failures(session, slug),
                "accounts": await _accounts_now(slots, slug, accounts.get(slug, []), states),
            }
        )
    return items


async def _accounts_now(
    slots: SlotStore, slug: str, rows: list[ProviderAccount], states: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each account with its slots in use right now and its own health."""
    if not rows:
        return []
    in_use = await slots.in_use_by_account(slug)
    return [
        {
            **account_admin.account_view(row),
            "in_use": in_use.get(row.name, 0),
            "health": states.get(f"{slug}#{row.name}", {"state": "up", "recent_calls": 0}),
        }
        for row in rows
    ]


async def account_views(session: AsyncSession) -> list[dict[str, Any]]:
    """Every vendor account, never its secret."""
    rows = await repository.accounts_by_provider(session)
    return [account_admin.account_view(row) for group in rows.values() for row in group]
