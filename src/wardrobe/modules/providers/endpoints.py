"""Admin view of the providers: shape, concurrency in use, and health (D5, D6)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.modules.auth.deps import InfraDep, Principal, require
from wardrobe.modules.auth.permissions import Permission
from wardrobe.modules.providers.base import AsyncProvider

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Operator = Annotated[Principal, Depends(require(Permission.CATALOG_WRITE))]


class ProviderOut(BaseModel):
    slug: str
    kind: str
    concurrency_limit: int | None
    in_use: int
    health: dict[str, Any]


@router.get(
    "/providers",
    summary="Providers with their concurrency use and health",
    response_model=Envelope[list[ProviderOut]],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED),
)
async def list_providers(_: Operator, infra: InfraDep) -> OrjsonResponse:
    runtime = infra.runtime
    health = await runtime.provider_health()
    limits = runtime.engine.config.provider_concurrency
    items = []
    for slug in infra.providers.slugs():
        provider = infra.providers.get(slug)
        items.append(
            {
                "slug": slug,
                "kind": "async" if isinstance(provider, AsyncProvider) else "sync",
                "concurrency_limit": limits.get(slug),
                "in_use": await runtime.engine.slots.in_use(slug),
                "health": health.get(slug, {"state": "up", "recent_calls": 0}),
            }
        )
    return ok(items)
