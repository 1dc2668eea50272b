"""Plans: what is sold, at what price, on which channels and when; edited by admins (audited),
loaded from YAML by operators, read by clients from each process's cache.

A plan is *on sale* while it is active, inside its validity window (``valid_from`` inclusive,
``valid_to`` exclusive, either end open when null), and priced above 0; an order names a channel
the plan is offered on (none listed: every channel). Orders snapshot what they sold, so an edit
never changes an order already placed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.audit import add_audit
from wardrobe.core.cache import Cache
from wardrobe.core.db import after_commit
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.models import Plan, PlanKind
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import repository
from wardrobe.modules.billing.schemas import PlanWrite

PLANS = "plans"
# The fields an admin (or a plans file) sets; sku names the plan and never changes.
FIELDS = (
    "kind",
    "name",
    "name_en",
    "price_fen",
    "quota",
    "period_days",
    "tier",
    "features",
    "channels",
    "sort_order",
    "is_active",
    "valid_from",
    "valid_to",
)


@dataclass(frozen=True, slots=True)
class PlanView:
    """A plan detached from any session (safe to cache and share between requests)."""

    sku: str
    kind: str
    name: str
    name_en: str | None
    price_fen: int
    quota: int
    period_days: int | None
    tier: str | None
    features: frozenset[str]
    channels: tuple[str, ...]
    is_active: bool
    valid_from: datetime | None
    valid_to: datetime | None

    @classmethod
    def of(cls, plan: Plan) -> PlanView:
        return cls(
            sku=plan.sku,
            kind=plan.kind,
            name=plan.name,
            name_en=plan.name_en,
            price_fen=plan.price_fen,
            quota=plan.quota,
            period_days=plan.period_days,
            tier=plan.tier,
            features=frozenset(plan.features or ()),
            channels=tuple(plan.channels or ()),
            is_active=plan.is_active,
            valid_from=plan.valid_from,
            valid_to=plan.valid_to,
        )

    def on_sale(self, now: datetime) -> bool:
        return (
            self.is_active
            and self.price_fen > 0
            and (self.valid_from is None or self.valid_from <= now)
            and (self.valid_to is None or now < self.valid_to)
        )

    def offered_on(self, channel: str) -> bool:
        return not self.channels or channel in self.channels


async def cached_plans(session: AsyncSession, cache: Cache) -> list[PlanView]:
    """Every plan, in display order (cached in each process; ``plans_changed`` after an edit).
    Validity windows are checked by the reader, so a window opens and closes on time."""

    async def load() -> list[PlanView]:
        return [PlanView.of(p) for p in await repository.all_plans(session)]

    return await cache.get(PLANS, "all", load) or []


async def cached_plan(session: AsyncSession, cache: Cache, sku: str) -> PlanView | None:
    return next((p for p in await cached_plans(session, cache) if p.sku == sku), None)


async def plans_on_sale(session: AsyncSession, cache: Cache) -> list[dict[str, Any]]:
    """The plans on sale now, as clients see them (``PlanOut``)."""
    now = utcnow()
    return [
        {
            "sku": p.sku,
            "kind": p.kind,
            "name": p.name,
            "name_en": p.name_en,
            "price_fen": p.price_fen,
            "quota": p.quota,
            "period_days": p.period_days,
            "tier": p.tier,
            "channels": list(p.channels),
        }
        for p in await cached_plans(session, cache)
        if p.on_sale(now)
    ]


def plans_changed(session: AsyncSession, cache: Cache) -> None:
    """Drop the cached plans in every process once this session's edit commits."""
    after_commit(session, lambda: cache.invalidate(PLANS))


def on_sale(plan: Plan | None, channel: str, now: datetime) -> Plan:
    """``plan`` if it may be ordered on ``channel`` now; else VALIDATION_FAILED on ``sku`` (no such
    plan) or PLAN_NOT_ON_SALE. Order creation reads the plan from the database, not the cache:
    what a buyer pays is what the plan says at that instant."""
    if plan is None:
        raise AppError(ErrorCode.VALIDATION_FAILED, data=[_problem("sku", "no such plan")])
    view = PlanView.of(plan)
    if not view.on_sale(now):
        raise AppError(ErrorCode.PLAN_NOT_ON_SALE, data={"sku": plan.sku}, detail=f"{plan.sku} not on sale")
    if not view.offered_on(channel):
        raise AppError(
            ErrorCode.PLAN_NOT_ON_SALE,
            data={"sku": plan.sku, "channels": list(view.channels)},
            detail=f"{plan.sku} not offered on {channel}",
        )
    return plan


def plan_body(plan: Plan) -> dict[str, Any]:
    """The plan as admins see it (``PlanAdminOut``)."""
    return {"sku": plan.sku, **{name: _value(plan, name) for name in FIELDS}} | {
        "created_at": plan.created_at,
        "updated_at": plan.updated_at,
    }


def _value(plan: Plan, name: str) -> Any:
    value = getattr(plan, name)
    return list(value or []) if name in ("features", "channels") else value


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


async def _check(session: AsyncSession, values: dict[str, Any]) -> None:
    """The rules between fields, and the features named: VALIDATION_FAILED naming each field."""
    problems = []
    if values["kind"] == PlanKind.MEMBERSHIP.value and not values["period_days"]:
        problems.append(_problem("period_days", "a membership needs period_days (at least 1)"))
    if values["kind"] == PlanKind.QUOTA_PACK.value and values["period_days"] is not None:
        problems.append(_problem("period_days", "a quota pack has no period: null"))
    if values["valid_from"] and values["valid_to"] and values["valid_to"] <= values["valid_from"]:
        problems.append(_problem("valid_to", "must be after valid_from"))
    unknown = await repository.missing_features(session, values["features"])
    if unknown:
        problems.append(_problem("features", f"no such feature: {', '.join(unknown)}"))
    if problems:
        raise AppError(ErrorCode.VALIDATION_FAILED, data=problems)


def _normalized(body: dict[str, Any]) -> dict[str, Any]:
    """Field values as stored: enum members as their values, lists as lists."""
    out = {}
    for name, value in body.items():
        if name in ("features", "channels"):
            value = [str(v) for v in value]
        elif name == "kind":
            value = str(value)
        out[name] = value
    return out


async def create_plan(
    session: AsyncSession, cache: Cache, body: PlanWrite, *, actor_id: int | None, reason: str | None
) -> Plan:
    """Add a plan (CONFLICT if its sku exists), audited as ``plan.create``."""
    values = _normalized({name: getattr(body, name) for name in FIELDS})
    await _check(session, values)
    now = utcnow()
    plan = Plan(sku=body.sku, created_at=now, updated_at=now, **values)
    try:
        # A savepoint: two creations of one sku race to the primary key, and one loses cleanly.
        async with session.begin_nested():
            session.add(plan)
            await session.flush()
    except IntegrityError as exc:
        raise AppError(ErrorCode.CONFLICT, data=[_problem("sku", "a plan with this sku exists")]) from exc
    add_audit(
        session,
        actor_id=actor_id,
        action="plan.create",
        target_type="plan",
        target_id=plan.sku,
        reason=reason,
        after={name: _json(value) for name, value in values.items()},
    )
    plans_changed(session, cache)
    return plan


async def update_plan(
    session: AsyncSession, cache: Cache, sku: str, changes: dict[str, Any], *, actor_id: int | None, reason: str
) -> tuple[Plan, dict[str, Any]]:
    """Change some fields of plan ``sku`` (NOT_FOUND if none), audited as ``plan.update`` with the
    fields that changed, before and after. Returns the plan and what changed (empty: nothing did,
    and nothing is written)."""
    plan = await repository.plan_for_update(session, sku)
    if plan is None:
        raise NotFound()
    wanted = _normalized(changes)
    merged = {name: _value(plan, name) for name in FIELDS} | wanted
    await _check(session, merged)
    changed = {name: value for name, value in wanted.items() if _value(plan, name) != value}
    if not changed:
        return plan, {}
    before = {name: _json(_value(plan, name)) for name in changed}
    for name, value in changed.items():
        setattr(plan, name, value)
    plan.updated_at = utcnow()
    await session.flush()
    add_audit(
        session,
        actor_id=actor_id,
        action="plan.update",
        target_type="plan",
        target_id=sku,
        reason=reason,
        before=before,
        after={name: _json(value) for name, value in changed.items()},
    )
    plans_changed(session, cache)
    return plan, changed
