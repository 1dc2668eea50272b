"""Account slots (issue 6): one atomic choice of the account with the most room, the same account
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
from wardrobe.modules.providers.slots import MemorySlots, RedisSlots, SlotStore

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
