"""Rate limits are exact across several API processes sharing Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL, Api
from tests.fixtures.auth import new_phone, sms_login
from wardrobe.core.errors import RateLimited
from wardrobe.core.ratelimit import RateLimiter, parse_limits


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_sms_cooldown_is_exact_across_two_instances(api_factory: object) -> None:
    a: Api = await api_factory()  # type: ignore[operator]
    b: Api = await api_factory()  # type: ignore[operator]
    assert a.app is not b.app
    assert a.infra.redis is not b.infra.redis
    phone = new_phone()
    sends = [(a if i % 2 else b).client.post("/api/v1/auth/sms-codes", json={"phone": phone}) for i in range(20)]
    results = await asyncio.gather(*sends)
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1
    assert statuses.count(429) == 19


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_ip_cap_is_exact_across_two_instances(api_factory: object) -> None:
    a: Api = await api_factory(sms_hourly_cap_per_ip=7)  # type: ignore[operator]
    b: Api = await api_factory(sms_hourly_cap_per_ip=7)  # type: ignore[operator]
    sends = [(a if i % 2 else b).client.post("/api/v1/auth/sms-codes", json={"phone": new_phone()}) for i in range(20)]
    statuses = [r.status_code for r in await asyncio.gather(*sends)]
    assert statuses.count(200) == 7
    assert statuses.count(429) == 13


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_login_backoff_is_exact_across_two_instances(api_factory: object) -> None:
    a: Api = await api_factory(login_failure_limits="4/minute")  # type: ignore[operator]
    b: Api = await api_factory(login_failure_limits="4/minute")  # type: ignore[operator]
    s = await sms_login(a.client)
    await a.client.put("/api/v1/auth/password", json={"new_password": "right-pass-5"}, headers=s.headers)
    tries = [
        (a if i % 2 else b).client.post(
            "/api/v1/auth/login", json={"method": "password", "phone": s.phone, "password": f"nope-pass-{i}"}
        )
        for i in range(12)
    ]
    codes = [r.json()["code"] for r in await asyncio.gather(*tries)]
    assert codes.count("AUTH_INVALID_CREDENTIALS") == 4
    assert codes.count("RATE_LIMITED") == 8


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
async def test_hit_all_consumes_every_window_or_none(shared: bool) -> None:
    """The edge windows of a request are taken together: a full one refuses the request without
    charging the others, and on Redis the windows are the library's own (peek and clear see them)."""
    redis = Redis.from_url(REDIS_URL) if shared else None
    prefix = f"wt-{uuid.uuid4().hex[:12]}"
    limiter = RateLimiter.for_redis(redis, prefix) if redis is not None else RateLimiter.in_memory()
    wide, narrow = parse_limits("5/minute"), parse_limits("2/minute")
    try:
        windows = [(wide, ("ip", "198.51.100.7")), (narrow, ("user", "42"))]
        await limiter.hit_all(windows)
        await limiter.hit_all(windows)
        with pytest.raises(RateLimited) as refused:
            await limiter.hit_all(windows)  # the user's window is full
        assert refused.value.detail == f"limit {narrow[0]}"
        assert 1 <= int(refused.value.headers["Retry-After"]) <= 61
        # The address's window was charged twice, not three times: three more fit, the fourth not.
        for _ in range(3):
            await limiter.hit([wide[0]], "ip", "198.51.100.7")
        with pytest.raises(RateLimited):
            await limiter.peek([wide[0]], "ip", "198.51.100.7")
        # Cleared through the library, the user's window takes requests again.
        await limiter.clear(narrow, "user", "42")
        await limiter.hit_all([(narrow, ("user", "42"))])
        await limiter.hit_all([])  # nothing to take
    finally:
        if redis is not None:
            keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()
