"""Rate limits are exact across several API processes sharing Redis (F3)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Api
from tests.fixtures.auth import new_phone, sms_login


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
