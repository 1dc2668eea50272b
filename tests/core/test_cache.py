"""The cache-aside on its own: hits, negative entries, single flight, jittered lifetimes,
stale loads not stored, and invalidations crossing processes through real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from wardrobe.core.cache import Cache, Policy
from wardrobe.core.metrics import CACHE_REQUESTS

POLICY = Policy(ttl=60, negative_ttl=5, jitter=0.1)


class Loader:
    """Counts loads and returns whatever ``value`` holds at the time."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        return self.value


def count(namespace: str, result: str) -> float:
    return float(CACHE_REQUESTS.labels(namespace, result)._value.get())


async def test_hits_do_not_load_again_and_unknown_keys_are_cached_too() -> None:
    cache = Cache(None, "t", {"ns": POLICY})
    load = Loader({"v": 1})
    hits = count("ns", "hit")
    assert await cache.get("ns", "a", load) == {"v": 1}
    assert await cache.get("ns", "a", load) == {"v": 1}
    assert load.calls == 1
    assert count("ns", "hit") == hits + 1

    nothing = Loader(None)
    assert await cache.get("ns", "ghost", nothing) is None
    assert await cache.get("ns", "ghost", nothing) is None
    assert nothing.calls == 1  # the database is not asked again for a key that does not exist

    cache.invalidate("ns", "a")
    load.value = {"v": 2}
    assert await cache.get("ns", "a", load) == {"v": 2}
    cache.invalidate("ns")  # the whole namespace
    assert await cache.get("ns", "ghost", nothing) is None
    assert nothing.calls == 2


async def test_values_expire_after_their_jittered_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("wardrobe.core.cache.time.monotonic", lambda: now[0])
    cache = Cache(None, "t", {"ns": POLICY})
    load, nothing = Loader("x"), Loader(None)
    await cache.get("ns", "k", load)
    await cache.get("ns", "none", nothing)
    now[0] += 5 * 0.9 - 0.01  # before the shortest negative lifetime
    await cache.get("ns", "none", nothing)
    assert nothing.calls == 1
    now[0] += 1.0  # past the longest negative lifetime (5 × 1.1)
    await cache.get("ns", "none", nothing)
    assert nothing.calls == 2
    now[0] += 60 * 1.1  # past the longest value lifetime
    await cache.get("ns", "k", load)
    assert load.calls == 2

    lifetimes = {cache._lifetime("ns", "v") for _ in range(500)}
    assert all(54 <= t <= 66 for t in lifetimes)
    assert max(lifetimes) - min(lifetimes) > 6  # spread out, not one fixed expiry for all


async def test_concurrent_misses_share_one_load() -> None:
    cache = Cache(None, "t", {"ns": POLICY})
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "loaded"

    readers = [asyncio.create_task(cache.get("ns", "k", slow)) for _ in range(20)]
    await started.wait()
    release.set()
    assert await asyncio.gather(*readers) == ["loaded"] * 20
    assert calls == 1


async def test_a_failed_load_is_not_cached_and_reaches_every_waiter() -> None:
    cache = Cache(None, "t", {"ns": POLICY})
    started, release = asyncio.Event(), asyncio.Event()

    async def broken() -> str:
        started.set()
        await release.wait()
        raise ConnectionError("database gone")

    readers = [asyncio.create_task(cache.get("ns", "k", broken)) for _ in range(3)]
    await started.wait()
    release.set()
    outcomes = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert await cache.get("ns", "k", Loader("back")) == "back"


async def test_a_load_overtaken_by_an_invalidation_is_not_stored() -> None:
    cache = Cache(None, "t", {"ns": POLICY})
    started, release = asyncio.Event(), asyncio.Event()

    async def old_read() -> str:
        started.set()
        await release.wait()
        return "old"  # read before the edit committed

    reader = asyncio.create_task(cache.get("ns", "k", old_read))
    await started.wait()
    cache.invalidate("ns", "k")  # the edit commits meanwhile
    release.set()
    assert await reader == "old"
    fresh = Loader("new")
    assert await cache.get("ns", "k", fresh) == "new"
    assert fresh.calls == 1


async def test_an_invalidation_reaches_the_other_process_and_not_back_to_its_sender() -> None:
    prefix = f"wt-cache-{uuid.uuid4().hex[:8]}"
    redis_a, redis_b = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    a = Cache(redis_a, prefix, {"ns": POLICY})
    b = Cache(redis_b, prefix, {"ns": POLICY})
    other = Cache(redis_b, prefix + "-other", {"ns": POLICY})  # another deployment's prefix
    await a.start()
    await b.start()
    await other.start()
    try:
        load_b, load_other = Loader("v1"), Loader("v1")
        assert await b.get("ns", "k", load_b) == "v1"
        await other.get("ns", "k", load_other)
        a.invalidate("ns", "k")
        await b.wait_received(1)
        load_b.value = "v2"
        assert await b.get("ns", "k", load_b) == "v2"
        assert load_b.calls == 2
        b.invalidate("ns", "k")  # published after a's own message, so delivered after it
        await a.wait_received(1)
        assert a.received == 1  # b's message only: its own broadcast was not applied twice
        assert other.received == 0
        await other.get("ns", "k", load_other)
        assert load_other.calls == 1
    finally:
        for cache in (a, b, other):
            await cache.stop()
        await redis_a.aclose()
        await redis_b.aclose()
