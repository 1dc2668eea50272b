"""Fulfilment: a confirmed payment credits the order's quota, extends a membership and pays the
referrer's rebate exactly once, however many confirmations race; a wrong amount changes nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import sms_login
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, Order, OrderStatus, Plan, Referral
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.modules.billing.service import cached_membership
from wardrobe.modules.payments.fulfilment import apply_payment
from wardrobe.modules.payments.gateway import Trade, TradeState
from wardrobe.modules.payments.orders import new_order_no
from wardrobe.seed import seed_plans


async def _order(api: Api, user_id: int, sku: str) -> Order:
    async with unit_of_work(api.infra.session_factory) as db:
        await seed_plans(db)
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
    return order


async def _apply(api: Api, order_no: str, paid_fen: int) -> str:
    async with unit_of_work(api.infra.session_factory) as db:
        return await apply_payment(
            db,
            order_no,
            Trade(TradeState.PAID, "4200000001", paid_fen),
            source="notify",
            settings=api.infra.settings,
            cache=api.infra.cache,
            announcer=api.infra.runtime.announcer,
        )


async def _ledger(api: Api, ref: str) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        return int(await db.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.ref == ref)) or 0)


async def test_twenty_racing_confirmations_fulfil_once(api: Api) -> None:
    user = await sms_login(api.client)
    uid = user.user["id"]
    order = await _order(api, uid, "pack-100")
    async with unit_of_work(api.infra.session_factory) as db:
        before = await quota.get_balance(db, uid)
    outcomes = await asyncio.gather(*(_apply(api, order.order_no, 990) for _ in range(20)))
    assert sorted(outcomes) == ["already_fulfilled"] * 19 + ["fulfilled"]
    for _ in range(20):  # and in sequence
        assert await _apply(api, order.order_no, 990) == "already_fulfilled"
    async with unit_of_work(api.infra.session_factory) as db:
        after = await quota.get_balance(db, uid)
        stored = await db.get(Order, order.id)
    assert after.balance == before.balance + 100
    assert await _ledger(api, f"order:{order.order_no}") == 1
    assert stored is not None
    assert (stored.status, stored.paid_fen, stored.transaction_id) == (OrderStatus.FULFILLED.value, 990, "4200000001")


async def test_a_wrong_amount_or_an_unknown_order_changes_nothing(api: Api) -> None:
    user = await sms_login(api.client)
    order = await _order(api, user.user["id"], "pack-100")
    assert await _apply(api, order.order_no, 1) == "amount_mismatch"
    assert await _apply(api, "WD00000000000000NOSUCHORDER", 990) == "unknown_order"
    async with unit_of_work(api.infra.session_factory) as db:
        stored = await db.get(Order, order.id)
    assert stored is not None
    assert stored.status == OrderStatus.PENDING.value
    assert await _ledger(api, f"order:{order.order_no}") == 0


async def test_membership_extends_and_the_referrer_gets_a_rebate_once(api: Api) -> None:
    referrer = await sms_login(api.client)
    buyer = await sms_login(api.client)
    async with unit_of_work(api.infra.session_factory) as db:
        db.add(Referral(referrer_id=referrer.user["id"], referee_id=buyer.user["id"], invite_code="TESTCODE"))
    async with unit_of_work(api.infra.session_factory) as db:
        assert await cached_membership(db, api.infra.cache, buyer.user["id"]) is None  # now cached as "none"
    first = await _order(api, buyer.user["id"], "member-monthly")
    second = await _order(api, buyer.user["id"], "member-monthly")
    assert await _apply(api, first.order_no, 2990) == "fulfilled"
    async with unit_of_work(api.infra.session_factory) as db:
        held = await cached_membership(db, api.infra.cache, buyer.user["id"])
    assert held is not None  # the cached "none" was dropped when the membership was granted
    assert held.sku == "member-monthly"
    assert timedelta(days=29, hours=23) < held.expires_at - utcnow() <= timedelta(days=30)
    assert await _apply(api, second.order_no, 2990) == "fulfilled"
    async with unit_of_work(api.infra.session_factory) as db:
        extended = await cached_membership(db, api.infra.cache, buyer.user["id"])
        rebate = await db.scalar(
            select(func.sum(LedgerEntry.amount)).where(
                LedgerEntry.user_id == referrer.user["id"], LedgerEntry.kind == "referral_rebate"
            )
        )
    assert extended is not None
    assert timedelta(days=59, hours=23) < extended.expires_at - utcnow() <= timedelta(days=60)  # stacked
    assert rebate == 2 * (300 * api.settings.referral_rebate_percent // 100)
    assert await _apply(api, first.order_no, 2990) == "already_fulfilled"
    assert await _ledger(api, f"rebate:{first.order_no}") == 1
