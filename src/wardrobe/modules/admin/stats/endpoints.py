"""HTTP route of /api/v1/admin/stats (stats:read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from wardrobe.core.deps import CacheDep, SessionDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors, server_check
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import Principal, require
from wardrobe.core.schemas import IsoDate
from wardrobe.models.base import utcnow
from wardrobe.modules.admin.stats import service
from wardrobe.modules.admin.stats.schemas import Granularity, StatsOverview

router = APIRouter(prefix="/api/v1/admin/stats", tags=["admin"])

Reader = Annotated[Principal, Depends(require(Permission.STATS_READ))]
_BOUNDS = f"between {service.EARLIEST} and {service.LATEST}"


@router.get(
    "/overview",
    summary="Business figures of a range of UTC days: users, tasks, performance, quota, revenue",
    description="Days from `from` to `to` (both included, UTC, at most 366). Closed days come from "
    "the daily rollups, today and days not yet rolled up are computed live. `active_users` counts "
    "users who created a task; `totals.active_users` is distinct over the whole range.",
    response_model=Envelope[StatsOverview],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED),
)
async def stats_overview(
    _: Reader,
    session: SessionDep,
    cache: CacheDep,
    from_: Annotated[
        IsoDate,
        Query(alias="from", description="First day (UTC)", json_schema_extra=server_check(_BOUNDS)),
    ],
    to: Annotated[
        IsoDate,
        Query(
            description="Last day (UTC), included",
            json_schema_extra=server_check(
                f"{_BOUNDS}; not before `from`; at most 366 days after it, counted inclusive"
            ),
        ),
    ],
    granularity: Granularity = "day",
) -> OrjsonResponse:
    body = await service.overview(session, cache, start=from_, end=to, today=utcnow().date())
    return ok(body)
