"""Invite codes and referrers."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from tests.conftest import Api
from tests.fixtures.auth import data, new_phone, request_code, sms_login
from wardrobe.core.db import unit_of_work
from wardrobe.models import InviteCodePool, Referral, User
from wardrobe.models.base import utcnow
from wardrobe.modules.users import invite_codes
from wardrobe.modules.users.invite_codes import (
    ALPHABET,
    InviteCodeSpaceExhausted,
    normalize_code,
    pick_free_code,
)


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(min_value=1, max_value=2),
    free=st.integers(min_value=0, max_value=3),
    seed=st.integers(),
)
def test_generator_terminates_on_a_nearly_full_space(length: int, free: int, seed: int) -> None:
    space = [""]
    for _ in range(length):
        space = [p + c for p in space for c in ALPHABET]
    rng = random.Random(seed)
    taken = set(rng.sample(space, len(space) - free))
    draws = 0

    def counting_choice(alphabet: str) -> str:
        nonlocal draws
        draws += 1
        return rng.choice(alphabet)

    try:
        code = pick_free_code(taken, length, max_attempts=invite_codes.MAX_ATTEMPTS, choice=counting_choice)
    except InviteCodeSpaceExhausted:
        assert draws == invite_codes.MAX_ATTEMPTS * length
    else:
        assert code not in taken
        assert len(code) == length
        assert draws <= invite_codes.MAX_ATTEMPTS * length


def test_a_full_space_raises_instead_of_spinning() -> None:
    with pytest.raises(InviteCodeSpaceExhausted):
        pick_free_code(set(ALPHABET), 1)


def test_typed_codes_are_normalised() -> None:
    assert normalize_code(" 7k3m-9qxd ") == "7K3M9QXD"
    assert normalize_code("IOL0") == "1010"


async def test_codes_are_unique_crockford_and_come_from_the_pool(api: Api) -> None:
    async with unit_of_work(api.infra.session_factory) as db:
        added = await invite_codes.refill_pool(db, 5, 8)
    assert added == 5
    sessions = [await sms_login(api.client) for _ in range(7)]
    async with unit_of_work(api.infra.session_factory) as db:
        codes = list(await db.scalars(select(User.invite_code)))
        left = await db.scalar(select(func.count()).select_from(InviteCodePool))
    assert len(codes) == len(set(codes)) == len(sessions)
    assert all(len(c) == 8 and set(c) <= set(ALPHABET) for c in codes)
    assert left == 0  # five from the pool, two made on the spot when it ran dry


async def test_invite_endpoint_and_referral_at_registration(api: Api) -> None:
    referrer = await sms_login(api.client)
    invite = data(await api.client.get("/api/v1/users/me/invite", headers=referrer.headers))
    assert invite["invited_count"] == 0
    await sms_login(api.client, invite_code=invite["invite_code"].lower())
    invite = data(await api.client.get("/api/v1/users/me/invite", headers=referrer.headers))
    assert invite["invited_count"] == 1
    async with unit_of_work(api.infra.session_factory) as db:
        referral = (await db.scalars(select(Referral))).one()
    assert referral.referrer_id == referrer.user["id"]
    assert referral.reward_status == "rewarded"  # credited by billing in the same transaction


async def _login_with_invite(api: Api, invite_code: str, phone: str | None = None) -> Any:
    phone = phone or new_phone()
    code = await request_code(api.client, phone)
    return await api.client.post(
        "/api/v1/auth/login", json={"method": "sms", "phone": phone, "code": code, "invite_code": invite_code}
    )


async def test_unknown_and_inactive_referrers_are_refused(api: Api) -> None:
    resp = await _login_with_invite(api, "ZZZZZZZZ")
    assert (resp.status_code, resp.json()["code"]) == (400, "INVITE_CODE_INVALID")
    referrer = await sms_login(api.client)
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(User).where(User.id == referrer.user["id"]).values(status="disabled"))
        code = await db.scalar(select(User.invite_code).where(User.id == referrer.user["id"]))
    assert code is not None
    phone = new_phone()
    resp = await _login_with_invite(api, code, phone)
    assert (resp.status_code, resp.json()["code"]) == (400, "INVITE_CODE_INVALID")
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(User).where(User.phone == phone)) is None  # nothing half-created


async def test_second_step_binding_self_and_immutability(api: Api) -> None:
    me = await sms_login(api.client)
    mine = data(await api.client.get("/api/v1/users/me/invite", headers=me.headers))["invite_code"]
    resp = await api.client.put("/api/v1/users/me/referrer", json={"invite_code": mine}, headers=me.headers)
    assert (resp.status_code, resp.json()["code"]) == (400, "INVITE_CODE_INVALID")

    other = await sms_login(api.client)
    theirs = data(await api.client.get("/api/v1/users/me/invite", headers=other.headers))["invite_code"]
    data(await api.client.put("/api/v1/users/me/referrer", json={"invite_code": theirs}, headers=me.headers))
    third = await sms_login(api.client)
    code3 = data(await api.client.get("/api/v1/users/me/invite", headers=third.headers))["invite_code"]
    resp = await api.client.put("/api/v1/users/me/referrer", json={"invite_code": code3}, headers=me.headers)
    assert (resp.status_code, resp.json()["code"]) == (409, "REFERRER_ALREADY_BOUND")
    # A referral cycle (the person I referred cannot refer me) is refused too.
    resp = await api.client.put("/api/v1/users/me/referrer", json={"invite_code": mine}, headers=other.headers)
    assert (resp.status_code, resp.json()["code"]) == (400, "INVITE_CODE_INVALID")


async def test_binding_window_closes(api: Api) -> None:
    me = await sms_login(api.client)
    other = await sms_login(api.client)
    theirs = data(await api.client.get("/api/v1/users/me/invite", headers=other.headers))["invite_code"]
    from datetime import timedelta

    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(User).where(User.id == me.user["id"]).values(created_at=utcnow() - timedelta(days=8)))
    resp = await api.client.put("/api/v1/users/me/referrer", json={"invite_code": theirs}, headers=me.headers)
    assert resp.json()["code"] == "INVITE_CODE_INVALID"


async def test_concurrent_first_logins_of_one_phone_create_one_user(api: Api) -> None:
    from wardrobe.modules.users import service

    phone = new_phone()

    async def first_login() -> int:
        async with unit_of_work(api.infra.session_factory) as db:
            user, _ = await service.get_or_create_by_phone(db, phone, policy=service.SignupPolicy())
            return user.id

    ids = await asyncio.gather(*(first_login() for _ in range(10)))
    assert len(set(ids)) == 1
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(func.count()).select_from(User).where(User.phone == phone)) == 1
