"""The membership expiry job: an ended membership is cleared and its unspent quota expires
through the ledger (never what open tasks hold), once, however many schedulers run it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import balance
from tests.modules.billing.plan_helpers import bought, create, membership, pack
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, LedgerKind, QuotaAccount
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.modules.billing.jobs import expire_memberships
from wardrobe.modules.billing.memberships import expiry_ref
from wardrobe.worker import scheduler


async def _spend(api: Api, user_id: int, amount: int, ref: str) -> None:
    """A task's charge: its hold, confirmed (a `confirm` ledger row)."""
    async with unit_of_work(api.infra.session_factory) as db:
        await quota.reserve(db, user_id, amount, ref=ref, ttl=timedelta(minutes=5))
    async with unit_of_work(api.infra.session_factory) as db:
        assert await quota.confirm(db, ref)


async def _hold(api: Api, user_id: int, amount: int, ref: str) -> None:
    async with unit_of_work(api.infra.session_factory) as db:
        await quota.reserve(db, user_id, amount, ref=ref, ttl=timedelta(minutes=5))


async def _lapse(api: Api, user_id: int) -> Any:
    """End the user's membership now, as if its time had run out (after what the test bought)."""
    ends = utcnow()
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(QuotaAccount).where(QuotaAccount.user_id == user_id).values(membership_expires_at=ends))
    return ends


async def _expiries(api: Api, user_id: int) -> list[tuple[int, str, str | None]]:
    async with unit_of_work(api.infra.session_factory) as db:
        rows = await db.execute(
            select(LedgerEntry.amount, LedgerEntry.ref, LedgerEntry.note)
            .where(LedgerEntry.user_id == user_id, LedgerEntry.kind == LedgerKind.EXPIRE.value)
            .order_by(LedgerEntry.id)
        )
        return [(int(r.amount), r.ref, r.note) for r in rows]


async def _membership(api: Api, user: Session) -> Any:
    return data(await api.client.get("/api/v1/billing/quota", headers=user.headers))["membership"]


async def _catalogue(api: Api) -> None:
    admin = await login_as(api, "admin")
    await create(api, admin, membership())
    await create(api, admin, pack())


async def test_the_unspent_membership_quota_expires_once_and_the_rest_stays(api: Api) -> None:
    await _catalogue(api)
    user = await sms_login(api.client)  # 10 from the sign-up grant
    uid = user.user["id"]
    await bought(api, uid, "vip-month")  # +300, the membership's
    await bought(api, uid, "pack-50")  # +50, never expires
    await _spend(api, uid, 120, "task:spent-1")
    await _hold(api, uid, 30, "task:running-1")
    assert await balance(api, uid) == (240, 30, 240)
    assert (await _membership(api, user))["plan"] == "vip-month"
    ends = await _lapse(api, uid)

    assert await scheduler.expire_memberships(api.infra) == 1
    # granted 300, spent 120 since the term began: 180 expire; the pack, the grant and the hold stay.
    assert await balance(api, uid) == (60, 30, 60)
    assert await _expiries(api, uid) == [
        (-180, expiry_ref(uid, ends), "membership vip-month ended: granted 300, spent 120, expired 180")
    ]
    assert await _membership(api, user) is None
    async with unit_of_work(api.infra.session_factory) as db:
        account = await db.get(QuotaAccount, uid)
    assert account is not None
    assert (account.membership_sku, account.membership_expires_at, account.membership_started_at) == (None, None, None)

    assert await scheduler.expire_memberships(api.infra) == 0  # a rerun finds nothing
    assert await balance(api, uid) == (60, 30, 60)
    assert len(await _expiries(api, uid)) == 1


async def test_what_open_tasks_hold_never_expires_and_spent_quota_expires_nothing(api: Api) -> None:
    await _catalogue(api)
    holding, spender = await sms_login(api.client), await sms_login(api.client)
    await bought(api, holding.user["id"], "vip-month")
    await _hold(api, holding.user["id"], 280, "task:big")  # available: 310 - 280 = 30
    await bought(api, spender.user["id"], "vip-month")
    await _spend(api, spender.user["id"], 305, "task:all")  # more than the membership gave
    for user in (holding, spender):
        await _lapse(api, user.user["id"])

    assert await expire_memberships(api.infra.session_factory, api.infra.cache) == 2
    assert await balance(api, holding.user["id"]) == (280, 280, 280)
    assert [e[0] for e in await _expiries(api, holding.user["id"])] == [-30]
    assert await balance(api, spender.user["id"]) == (5, 0, 5)
    [(amount, _, note)] = await _expiries(api, spender.user["id"])
    assert (amount, note) == (0, "membership vip-month ended: granted 300, spent 305, expired 0")


async def test_two_schedulers_at_once_end_each_membership_once(api_factory: Any) -> None:
    a: Api = await api_factory()
    b: Api = await api_factory()
    await _catalogue(a)
    users = [await sms_login(a.client) for _ in range(6)]
    for user in users:
        await bought(a, user.user["id"], "vip-month")
        await _spend(a, user.user["id"], 100, f"task:{user.user['id']}")
        await _lapse(a, user.user["id"])

    counts = await asyncio.gather(
        expire_memberships(a.infra.session_factory, a.infra.cache, batch=2),
        expire_memberships(b.infra.session_factory, b.infra.cache, batch=2),
        expire_memberships(b.infra.session_factory, b.infra.cache, batch=2),
    )
    assert sum(counts) == len(users)
    for user in users:
        assert [e[0] for e in await _expiries(a, user.user["id"])] == [-200]
        assert await balance(a, user.user["id"]) == (10, 0, 10)


async def test_a_purchase_after_the_end_expires_the_old_term_first_and_renewals_extend_it(api: Api) -> None:
    await _catalogue(api)
    user = await sms_login(api.client)
    uid = user.user["id"]
    await bought(api, uid, "vip-month")
    await bought(api, uid, "vip-month")  # a renewal: one term, 60 days, 600 granted
    async with unit_of_work(api.infra.session_factory) as db:
        account = await db.get(QuotaAccount, uid)
    assert account is not None
    assert account.membership_expires_at is not None
    assert account.membership_started_at is not None
    assert account.membership_expires_at - account.membership_started_at == timedelta(days=60)
    await _spend(api, uid, 50, "task:before-end")
    ends = await _lapse(api, uid)

    # Bought again before the job ran: the old term's 550 expire, then the new term begins.
    await bought(api, uid, "vip-month")
    assert await _expiries(api, uid) == [
        (-550, expiry_ref(uid, ends), "membership vip-month ended: granted 600, spent 50, expired 550")
    ]
    assert await balance(api, uid) == (310, 0, 310)
    assert (await _membership(api, user))["plan"] == "vip-month"
    assert await scheduler.expire_memberships(api.infra) == 0  # the new term has not ended

    await _lapse(api, uid)
    assert await scheduler.expire_memberships(api.infra) == 1
    assert [e[0] for e in await _expiries(api, uid)] == [-550, -300]
    assert await balance(api, uid) == (10, 0, 10)
