"""Socket seats on Redis: renewal extends every seat this process holds, in rounds, and never
brings back one freed meanwhile."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from wardrobe.realtime.seats import LEASE_SECONDS, RENEW_BATCH, RedisSeats


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_renewal_extends_every_held_seat_across_rounds_and_skips_freed_ones(redis: Redis) -> None:
    prefix = f"wt-seats-{uuid.uuid4().hex[:8]}"
    seats = RedisSeats(redis, prefix)
    # More users than one round holds, some with two sockets.
    held = [(user, f"sid-{user}-{n}") for user in range(RENEW_BATCH + 30) for n in range(1 + user % 2)]
    for user, sid in held:
        assert await seats.take(user, sid, cap=5)
    await seats.release(7, "sid-7-0")
    started = time.time()
    await seats.renew(held)
    try:
        for user, sid in held:
            score = await redis.zscore(f"{prefix}:socket_seats:{user}", sid)
            if (user, sid) == (7, "sid-7-0"):
                assert score is None
                continue
            assert score is not None
            assert started + LEASE_SECONDS <= score <= time.time() + LEASE_SECONDS, (user, sid)
            assert 0 < await redis.ttl(f"{prefix}:socket_seats:{user}") <= int(LEASE_SECONDS) + 1
    finally:
        keys = [key async for key in redis.scan_iter(f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
