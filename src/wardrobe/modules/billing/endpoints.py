"""HTTP routes of /api/v1/billing and the admin quota adjustment (api.md "Billing")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from wardrobe.core.deps import CacheDep, SessionDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.pagination import CursorQuery, decode_cursor, split_page
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import CurrentUser, Principal, require
from wardrobe.core.schemas import Id
from wardrobe.modules.billing import plans, quota, service
from wardrobe.modules.billing.schemas import LedgerPage, PlanOut, QuotaAdjusted, QuotaAdjustment, QuotaOut

router = APIRouter(tags=["billing"])
Adjuster = Annotated[Principal, Depends(require(Permission.QUOTA_ADJUST))]


@router.get(
    "/api/v1/billing/plans",
    summary="Membership plans and quota packs on sale",
    description="Active plans inside their validity window, in display order. `channels` lists the "
    "payment channels a plan may be ordered on; empty means every channel.",
    response_model=Envelope[list[PlanOut]],
    responses=errors(),
)
async def list_plans(session: SessionDep, cache: CacheDep) -> OrjsonResponse:
    return ok(await plans.plans_on_sale(session, cache))


@router.get(
    "/api/v1/billing/quota",
    summary="My quota: balance, held by running tasks, available",
    response_model=Envelope[QuotaOut],
    responses=errors(*AUTH_ERRORS),
)
async def my_quota(principal: CurrentUser, cache: CacheDep, session: SessionDep) -> OrjsonResponse:
    balance = await quota.get_balance(session, principal.id)
    membership = await service.cached_membership(session, cache, principal.id)
    return ok(
        {
            "balance": balance.balance,
            "held": balance.held,
            "available": balance.available,
            "membership": {"plan": membership.sku, "expires_at": membership.expires_at} if membership else None,
        }
    )


@router.get(
    "/api/v1/billing/ledger",
    summary="My quota ledger, newest first (keyset pagination)",
    response_model=Envelope[LedgerPage],
    responses=errors(*AUTH_ERRORS),
)
async def my_ledger(
    principal: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
) -> OrjsonResponse:
    before = decode_cursor(cursor) if cursor else None
    rows = await quota.ledger_page(session, principal.id, limit=limit + 1, before_id=before)
    page, next_cursor = split_page(rows, limit, lambda e: e.id)
    items = [
        {
            "id": e.id,
            "kind": e.kind,
            "amount": e.amount,
            "balance_after": e.balance_after,
            "ref": _public_ref(e.ref),
            "created_at": e.created_at,
        }
        for e in page
    ]
    return ok({"items": items, "next_cursor": next_cursor})


def _public_ref(ref: str) -> str:
    # Admin adjustment refs are internal nonces; the user sees only that it was an adjustment.
    return "admin" if ref.startswith("admin:") else ref


@router.post(
    "/api/v1/admin/users/{user_id}/quota-adjustments",
    summary="Add or remove quota with a reason (audited; never below what is available)",
    response_model=Envelope[QuotaAdjusted],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED, ErrorCode.NOT_FOUND, ErrorCode.QUOTA_INSUFFICIENT),
)
async def adjust_quota(user_id: Id, body: QuotaAdjustment, actor: Adjuster, session: SessionDep) -> OrjsonResponse:
    balance = await service.adjust(session, actor_id=actor.id, user_id=user_id, delta=body.delta, reason=body.reason)
    return ok({"balance": balance.balance, "held": balance.held, "available": balance.available})
