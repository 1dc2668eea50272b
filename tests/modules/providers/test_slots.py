"""Account slots: one atomic choice of the account with the most room, the same account
for a holder that renews, none past every account's limit — in Redis and in process memory."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from tests.fixtures.tasks import wait_until
from wardrobe.modules.providers.slots import MemorySlots, RedisSlots, SlotStore, wait_for_slot

ACCOUNTS = [("a", 1), ("b", 2)]


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SlotStore]:
    if request.param == "memory":
        yield MemorySlots()
        return
    redis = Redis.from_url(REDIS_URL)
    prefix = f"wt-slots-{uuid.uuid4().hex[:8]}"
    try:
        yield RedisSlots(redis, prefix)
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_the_account_with_most_room_wins_and_a_holder_keeps_its_account(store: SlotStore) -> None:
    assert await store.try_acquire_account("rh", "t1", ACCOUNTS, 60) == "b"  # b: 2 free, a: 1
    assert await store.try_acquire_account("rh", "t2", ACCOUNTS, 60) == "a"  # a earlier on a tie
    assert await store.try_acquire_account("rh", "t3", ACCOUNTS, 60) == "b"
    assert await store.try_acquire_account("rh", "t4", ACCOUNTS, 60) is None  # all full
    assert await store.try_acquire_account("rh", "t2", ACCOUNTS, 60) == "a"  # renewing keeps it
    assert await store.in_use_by_account("rh") == {"a": 1, "b": 2}
    await store.release("rh", "t2", "a")
    assert await store.try_acquire_account("rh", "t4", ACCOUNTS, 60) == "a"
    assert await store.in_use("rh") == 3


async def test_an_expired_slot_frees_its_account(store: SlotStore) -> None:
    assert await store.try_acquire_account("rh", "gone", [("a", 1)], 0.001) == "a"

    async def freed() -> bool:
        return await store.try_acquire_account("rh", "next", [("a", 1)], 60) == "a"

    await wait_until(freed, within=5)
    assert await store.in_use_by_account("rh") == {"a": 1}


async def test_many_concurrent_takers_never_exceed_any_account(store: SlotStore) -> None:
    won = await asyncio.gather(*(store.try_acquire_account("rh", f"t{i}", ACCOUNTS, 60) for i in range(20)))
    assert Counter(w for w in won if w is not None) == Counter({"a": 1, "b": 2})


async def test_a_freed_slot_goes_to_the_first_waiter_not_the_first_to_ask_again(store: SlotStore) -> None:
    assert await store.try_acquire("p", "running", 1, 60)
    assert not await store.try_acquire("p", "first", 1, 60)  # queued first
    assert not await store.try_acquire("p", "second", 1, 60)
    await store.release("p", "running")
    assert not await store.try_acquire("p", "second", 1, 60)  # asks first after the release: not its turn
    assert await store.try_acquire("p", "first", 1, 60)
    await store.release("p", "first")
    assert await store.try_acquire("p", "second", 1, 60)
    assert await store.in_use("p") == 1


async def test_a_waiter_that_gives_up_or_goes_silent_leaves_the_queue(
    store: SlotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wardrobe.modules.providers.slots as slots

    assert await store.try_acquire("p", "running", 1, 60)
    assert not await wait_for_slot(store, "p", "quitter", 1, 60, within=0)  # gives up: abandons
    assert not await store.try_acquire("p", "silent", 1, 60)
    assert not await store.try_acquire("p", "patient", 1, 60)
    await store.release("p", "running")
    assert not await store.try_acquire("p", "patient", 1, 60)  # "silent" is ahead, and still fresh
    monkeypatch.setattr(slots, "STALE_SECONDS", 0.0)  # from now on, a waiter not asking is gone

    async def patient_served() -> bool:
        return await store.try_acquire("p", "patient", 1, 60)

    await wait_until(patient_served, within=5)


async def test_waiters_are_served_in_arrival_order_under_contention(store: SlotStore) -> None:
    """Ten steps queue behind one slot and ask again in random order; each freed slot goes to the
    earliest of them."""
    import random

    assert await store.try_acquire("p", "w-start", 1, 60)
    waiters = [f"w{i}" for i in range(10)]
    for waiter in waiters:
        assert not await store.try_acquire("p", waiter, 1, 60)
    served: list[str] = []
    holder = "w-start"
    while len(served) < len(waiters):
        await store.release("p", holder)
        for waiter in random.sample([w for w in waiters if w not in served], k=len(waiters) - len(served)):
            if await store.try_acquire("p", waiter, 1, 60):
                served.append(waiter)
                holder = waiter
                break
    assert served == waiters


async def test_a_waiter_learns_its_place_in_the_queue(store: SlotStore) -> None:
    assert await store.ask("p", "running", [("", 1)], 60) == ("", 0)
    assert await store.ask("p", "first", [("", 1)], 60) == (None, 0)
    assert await store.ask("p", "second", [("", 1)], 60) == (None, 1)
    assert await store.ask("p", "first", [("", 1)], 60) == (None, 0)  # asking again keeps the place


async def test_a_renewed_slot_outlives_its_first_lease_and_a_lapsed_one_is_not_taken_back(store: SlotStore) -> None:
    assert await store.try_acquire("p", "kept", 1, 0.5)
    assert await store.renew("p", "kept", "", 60)  # the holder's heartbeat
    assert await store.renew("p", "kept", "", 0.001)  # a shorter renewal keeps the longer lease
    assert await store.try_acquire("p", "gone", 2, 0.001)

    async def lapsed() -> bool:
        return await store.in_use("p") == 1

    await wait_until(lapsed, within=5)  # "gone" was not renewed: its lease ran out, "kept" stays
    assert not await store.renew("p", "gone", "", 60)  # a lapsed slot is not taken back
    assert await store.try_acquire("p", "next", 2, 60)
    assert not await store.try_acquire("p", "late", 2, 60)  # "kept" and "next": the limit


async def test_a_slot_released_for_later_stays_taken_until_then(store: SlotStore) -> None:
    assert await store.try_acquire("p", "caller", 1, 60)
    await store.release("p", "caller", after=600)  # a call of it may still run at the vendor
    assert not await store.try_acquire("p", "other", 1, 60)
    assert await store.in_use("p") == 1
    await store.release("p", "caller", after=0.001)  # its time (cut short here) is up

    async def freed() -> bool:
        return await store.try_acquire("p", "other", 1, 60)

    await wait_until(freed, within=5)
    await store.release("p", "gone-already", after=60)  # no slot: nothing is taken
    assert await store.in_use("p") == 1
