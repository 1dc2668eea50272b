"""Quota accounting: exact under concurrency, idempotent, ledger always equal to balance."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.conftest import Api, Backend
from tests.fixtures.auth import data, login_as, sms_login
from wardrobe.core.db import create_engine, create_session_factory, unit_of_work
from wardrobe.models import AuditLog, HoldStatus, LedgerEntry, LedgerKind, QuotaAccount, QuotaHold, Referral, User
from wardrobe.modules.billing import quota
from wardrobe.modules.users import service as users_service
from wardrobe.settings import Environment, Settings

HOUR = timedelta(hours=1)


async def _new_user(factory: object, balance: int) -> int:
    async with unit_of_work(factory) as db:  # type: ignore[arg-type]
        user = await users_service.create_user(db, policy=users_service.SignupPolicy())
        assert user is not None
        if balance:
            await quota.credit(db, user.id, balance, kind=LedgerKind.GRANT, ref=f"test:{user.id}")
        return user.id


async def _ledger_count(factory: object, user_id: int) -> int:
    async with unit_of_work(factory) as db:  # type: ignore[arg-type]
        return int(
            await db.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.user_id == user_id)) or 0
        )


async def _invariants(factory: object, user_id: int) -> tuple[int, int]:
    async with unit_of_work(factory) as db:  # type: ignore[arg-type]
        account = await db.get(QuotaAccount, user_id)
        assert account is not None
        ledger_sum = await db.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.user_id == user_id)
        )
        hold_sum = await db.scalar(
            select(func.coalesce(func.sum(LedgerEntry.hold_delta), 0)).where(LedgerEntry.user_id == user_id)
        )
        open_holds = await db.scalar(
            select(func.coalesce(func.sum(QuotaHold.amount), 0)).where(
                QuotaHold.user_id == user_id, QuotaHold.status == HoldStatus.HELD.value
            )
        )
        last = await db.scalar(
            select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id.desc()).limit(1)
        )
    assert account.balance >= 0
    assert 0 <= account.held <= account.balance
    assert account.balance == ledger_sum
    assert account.held == hold_sum == open_holds
    if last is not None:
        assert (last.balance_after, last.held_after) == (account.balance, account.held)
    return account.balance, account.held


async def test_new_users_get_the_free_grant_and_see_it(api: Api) -> None:
    s = await sms_login(api.client)
    q = data(await api.client.get("/api/v1/billing/quota", headers=s.headers))
    assert q == {"balance": 10, "held": 0, "available": 10, "membership": None}
    page = data(await api.client.get("/api/v1/billing/ledger", headers=s.headers))
    assert [(i["kind"], i["amount"], i["balance_after"]) for i in page["items"]] == [("grant", 10, 10)]
    assert page["next_cursor"] is None


async def test_referral_reward_is_credited_once(api: Api) -> None:
    referrer = await sms_login(api.client)
    code = data(await api.client.get("/api/v1/users/me/invite", headers=referrer.headers))["invite_code"]
    await sms_login(api.client, invite_code=code)
    q = data(await api.client.get("/api/v1/billing/quota", headers=referrer.headers))
    assert q["balance"] == 10 + 5
    async with unit_of_work(api.infra.session_factory) as db:
        referral = (await db.scalars(select(Referral))).one()
        assert referral.reward_status == "rewarded"
        from wardrobe.modules.billing import service as billing

        assert await billing.reward_referral(db, referral, amount=5) is False
    await _invariants(api.infra.session_factory, referrer.user["id"])


async def test_admin_adjustments_need_a_reason_and_never_overdraw(api: Api) -> None:
    admin = await login_as(api, "admin")
    target = await sms_login(api.client)
    url = f"/api/v1/admin/users/{target.user['id']}/quota-adjustments"
    body = data(await api.client.post(url, json={"delta": 20, "reason": "support ticket 42"}, headers=admin.headers))
    assert body == {"balance": 30, "held": 0, "available": 30}
    resp = await api.client.post(url, json={"delta": -31, "reason": "too much"}, headers=admin.headers)
    assert (resp.status_code, resp.json()["code"]) == (402, "QUOTA_INSUFFICIENT")
    for bad in ({"delta": 0, "reason": "zero"}, {"delta": 5}, {"delta": 5, "reason": "x"}):
        resp = await api.client.post(url, json=bad, headers=admin.headers)
        assert resp.status_code == 422, bad
    resp = await api.client.post(
        "/api/v1/admin/users/999999/quota-adjustments",
        json={"delta": 5, "reason": "ghost"},
        headers=admin.headers,
    )
    assert resp.status_code == 404
    data(await api.client.post(url, json={"delta": -30, "reason": "chargeback"}, headers=admin.headers))
    ledger = data(await api.client.get("/api/v1/billing/ledger", headers=target.headers))["items"]
    assert [(i["kind"], i["amount"], i["ref"]) for i in ledger[:2]] == [
        ("admin_adjustment", -30, "admin"),
        ("admin_adjustment", 20, "admin"),
    ]
    assert await _invariants(api.infra.session_factory, target.user["id"]) == (0, 0)
    async with unit_of_work(api.infra.session_factory) as db:
        audits = list(await db.scalars(select(AuditLog).where(AuditLog.action == "quota.adjust").order_by(AuditLog.id)))
    assert [(a.reason, a.before["balance"], a.after["balance"]) for a in audits if a.before and a.after] == [
        ("support ticket 42", 10, 30),
        ("chargeback", 30, 0),
    ]


async def test_200_concurrent_reserves_on_a_balance_of_50_sell_exactly_50(api: Api) -> None:
    factory = api.infra.session_factory
    user_id = await _new_user(factory, 50)

    async def one(i: int) -> bool:
        try:
            async with unit_of_work(factory) as db:
                await quota.reserve(db, user_id, 1, ref=f"task-{i}", ttl=HOUR)
            return True
        except quota.QuotaInsufficient:
            return False

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert results.count(True) == 50
    assert await _invariants(factory, user_id) == (50, 50)


async def test_settlement_happens_exactly_once_under_races(api: Api) -> None:
    factory = api.infra.session_factory
    user_id = await _new_user(factory, 5)
    async with unit_of_work(factory) as db:
        await quota.reserve(db, user_id, 3, ref="race", ttl=HOUR)

    async def settle(i: int) -> bool:
        async with unit_of_work(factory) as db:
            return await (quota.confirm(db, "race") if i % 2 else quota.cancel(db, "race"))

    outcomes = await asyncio.gather(*(settle(i) for i in range(20)))
    assert outcomes.count(True) == 1
    balance, held = await _invariants(factory, user_id)
    assert held == 0
    assert balance in (2, 5)  # confirmed (charged 3) or canceled (refunded), never both


async def test_same_ref_reserved_concurrently_holds_once(api: Api) -> None:
    factory = api.infra.session_factory
    user_id = await _new_user(factory, 10)

    async def reserve() -> int:
        async with unit_of_work(factory) as db:
            return (await quota.reserve(db, user_id, 4, ref="same-key", ttl=HOUR)).id

    ids = await asyncio.gather(*(reserve() for _ in range(10)))
    assert len(set(ids)) == 1
    assert await _invariants(factory, user_id) == (10, 4)


async def test_sweeper_releases_expired_holds_once(api: Api) -> None:
    from wardrobe.worker.scheduler import release_expired_holds

    factory = api.infra.session_factory
    user_id = await _new_user(factory, 5)
    async with unit_of_work(factory) as db:
        await quota.reserve(db, user_id, 2, ref="stale", ttl=timedelta(seconds=-1))
        await quota.reserve(db, user_id, 1, ref="fresh", ttl=HOUR)
    assert await release_expired_holds(api.infra) == 1
    assert await release_expired_holds(api.infra) == 0
    assert await _invariants(factory, user_id) == (5, 1)
    async with unit_of_work(factory) as db:
        assert await quota.confirm(db, "stale") is False  # too late: it was refunded


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "confirm", "cancel", "grant", "remove"]),
        st.integers(0, 7),
        st.integers(1, 6),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, start=st.integers(0, 10))
def test_random_sequences_keep_the_invariants(backend: Backend, ops: list[tuple[str, int, int]], start: int) -> None:
    """Any sequence of reserve/confirm/cancel/grant/remove keeps balance >= 0, balance equal to the
    ledger sum and held equal to the open holds."""

    async def run() -> None:
        engine = create_engine(Settings(env=Environment.TEST), database_url=backend.database_url)
        factory = create_session_factory(engine)
        try:
            user_id = await _new_user(factory, start)
            state = await _invariants(factory, user_id)
            for n, (op, ref_no, amount) in enumerate(ops):
                ref = f"p{user_id}-{ref_no}"
                entries = await _ledger_count(factory, user_id)
                try:
                    async with unit_of_work(factory) as db:
                        if op == "reserve":
                            await quota.reserve(db, user_id, amount, ref=ref, ttl=HOUR)
                        elif op == "confirm":
                            await quota.confirm(db, ref)
                        elif op == "cancel":
                            await quota.cancel(db, ref)
                        else:
                            delta = amount if op == "grant" else -amount
                            await quota.credit(
                                db,
                                user_id,
                                delta,
                                kind=LedgerKind.ADMIN_ADJUSTMENT,
                                ref=f"adj-{user_id}-{n}-{random.random()}",
                            )
                except quota.QuotaInsufficient:
                    # Only taking quota can be refused, and a refusal changes nothing at all.
                    assert op in ("reserve", "remove"), op
                    assert await _invariants(factory, user_id) == state
                    assert await _ledger_count(factory, user_id) == entries
                state = await _invariants(factory, user_id)
        finally:
            await engine.dispose()

    asyncio.run(run())


async def test_user_creation_opens_exactly_one_account(api: Api) -> None:
    s = await sms_login(api.client)
    async with unit_of_work(api.infra.session_factory) as db:
        users = await db.scalar(select(func.count()).select_from(User))
        accounts = await db.scalar(select(func.count()).select_from(QuotaAccount))
    assert users == accounts == 1
    assert s.user["id"]
