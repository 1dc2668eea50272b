"""Admin routes of /api/v1/admin/plans: operators read what is sold; admins decide it (audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from wardrobe.core.deps import CacheDep, SessionDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import Principal, require
from wardrobe.modules.billing import plans, repository
from wardrobe.modules.billing.schemas import SKU_PATTERN, PlanAdminOut, PlanPatch, PlanWrite

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Reader = Annotated[Principal, Depends(require(Permission.CATALOG_READ))]
Manager = Annotated[Principal, Depends(require(Permission.PLANS_MANAGE))]
Sku = Annotated[str, Path(pattern=SKU_PATTERN, description="The plan's sku")]
DENIED = (*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED)


@router.get(
    "/plans",
    summary="Every plan, inactive ones too, in display order (sort_order, sku)",
    response_model=Envelope[list[PlanAdminOut]],
    responses=errors(*DENIED),
)
async def list_plans(_: Reader, session: SessionDep) -> OrjsonResponse:
    return ok([plans.plan_body(p) for p in await repository.all_plans(session)])


@router.post(
    "/plans",
    status_code=201,
    summary="Create a plan (audited as plan.create)",
    description="Every process serves the new catalogue from the next request. A membership needs "
    "`period_days`; a quota pack has none; `features` name existing features; an existing sku is `CONFLICT`.",
    response_model=Envelope[PlanAdminOut],
    responses=errors(*DENIED, ErrorCode.CONFLICT),
)
async def create_plan(body: PlanWrite, actor: Manager, cache: CacheDep, session: SessionDep) -> OrjsonResponse:
    plan = await plans.create_plan(session, cache, body, actor_id=actor.id, reason=body.reason)
    return ok(plans.plan_body(plan), status_code=201)


@router.patch(
    "/plans/{sku}",
    summary="Change some fields of a plan, with a reason (audited as plan.update)",
    description="Orders already placed keep the price, quota and period they were placed at. The "
    "audit record holds the fields that changed, before and after.",
    response_model=Envelope[PlanAdminOut],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def update_plan(
    sku: Sku, body: PlanPatch, actor: Manager, cache: CacheDep, session: SessionDep
) -> OrjsonResponse:
    plan, _ = await plans.update_plan(session, cache, sku, body.changes(), actor_id=actor.id, reason=body.reason)
    return ok(plans.plan_body(plan))
