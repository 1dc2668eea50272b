"""Bodies and calls shared by the plans tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.conftest import Api
from tests.fixtures.auth import Session, data
from wardrobe.core.db import unit_of_work
from wardrobe.models import Order, Plan
from wardrobe.models.base import utcnow
from wardrobe.modules.payments.fulfilment import apply_payment
from wardrobe.modules.payments.gateway import Trade, TradeState
from wardrobe.modules.payments.orders import new_order_no


def membership(sku: str = "vip-month", **changes: Any) -> dict[str, Any]:
    body = {
        "sku": sku,
        "kind": "membership",
        "name": "月卡会员",
        "name_en": "Monthly membership",
        "price_fen": 2990,
        "quota": 300,
        "period_days": 30,
        "tier": "vip",
    }
    return body | changes


def pack(sku: str = "pack-50", **changes: Any) -> dict[str, Any]:
    body = {"sku": sku, "kind": "quota_pack", "name": "50 次体验包", "price_fen": 990, "quota": 50}
    return body | changes


async def create(api: Api, admin: Session, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = data(await api.client.post("/api/v1/admin/plans", json=body, headers=admin.headers), 201)
    return created


async def patch(api: Api, admin: Session, sku: str, **changes: Any) -> dict[str, Any]:
    body = {"reason": "test change"} | changes
    patched: dict[str, Any] = data(
        await api.client.patch(f"/api/v1/admin/plans/{sku}", json=body, headers=admin.headers)
    )
    return patched


async def on_sale(api: Api) -> dict[str, dict[str, Any]]:
    return {p["sku"]: p for p in data(await api.client.get("/api/v1/billing/plans"))}


async def bought(api: Api, user_id: int, sku: str) -> str:
    """A paid order of plan ``sku`` for the user, fulfilled as a payment notification would;
    returns its order number."""
    async with unit_of_work(api.infra.session_factory) as db:
        plan = await db.get(Plan, sku)
        assert plan is not None
        order = Order(
            order_no=new_order_no(),
            user_id=user_id,
            sku=plan.sku,
            kind=plan.kind,
            name=plan.name,
            quota=plan.quota,
            period_days=plan.period_days,
            channel="wechat_native",
            amount_fen=plan.price_fen,
            expires_at=utcnow() + timedelta(minutes=30),
        )
        db.add(order)
    async with unit_of_work(api.infra.session_factory) as db:
        outcome = await apply_payment(
            db,
            order.order_no,
            Trade(TradeState.PAID, f"42{order.order_no}", order.amount_fen),
            source="notify",
            settings=api.infra.settings,
            cache=api.infra.cache,
            announcer=api.infra.runtime.announcer,
        )
    assert outcome == "fulfilled"
    return order.order_no
