"""Rate limits at the edge: per address, per user, per endpoint class; the client address
behind trusted proxies only; fail closed for login and SMS when the store is down; exact across
two real API processes sharing Redis."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.fixtures.auth import data, new_phone, sms_login
from tests.fixtures.tasks import OWN_PROCESSES, free_port, spawn_worker, stop_workers, wait_until, worker_env
from wardrobe.core.edge_limits import EndpointClass, classify, client_address, parse_networks
from wardrobe.core.ratelimit import RateLimiter

TRUSTED = parse_networks(["10.0.0.0/8", "203.0.113.7"])


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/health/ready", None),
        ("GET", "/metrics", None),
        ("GET", "/socket.io/", None),
        ("POST", "/api/v1/auth/sms-codes", EndpointClass.AUTH),
        ("POST", "/api/v1/auth/login", EndpointClass.AUTH),
        ("POST", "/api/v1/tasks", EndpointClass.TASK_CREATE),
        ("GET", "/api/v1/tasks", EndpointClass.READ),
        ("POST", "/api/v1/tasks/abc/cancel", EndpointClass.WRITE),
        ("PATCH", "/api/v1/users/me", EndpointClass.WRITE),
    ],
)
def test_requests_are_classified(method: str, path: str, expected: EndpointClass | None) -> None:
    assert classify(method, path) is expected


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.9", "1.2.3.4", "198.51.100.9"),  # not a proxy of ours: the header is ignored
        ("203.0.113.7", None, "203.0.113.7"),
        ("203.0.113.7", "1.2.3.4", "1.2.3.4"),
        ("203.0.113.7", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the left part is the client's own claim
        ("203.0.113.7", "1.2.3.4, 10.1.2.3", "1.2.3.4"),  # through two proxies of ours
        ("203.0.113.7", "1.2.3.4, not-an-ip", "203.0.113.7"),
        ("203.0.113.7", "::ffff:1.2.3.4", "1.2.3.4"),
        ("10.0.0.1", "10.0.0.2, 10.0.0.3", "10.0.0.2"),  # every hop trusted: the left-most
    ],
)
def test_the_client_address_is_believed_only_from_trusted_proxies(
    peer: str, forwarded: str | None, expected: str
) -> None:
    assert client_address(peer, forwarded, TRUSTED) == expected
    assert client_address(peer, forwarded, ()) == peer


def test_bad_proxy_settings_are_refused() -> None:
    from pydantic import ValidationError

    from wardrobe.settings import Settings

    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies=["not-a-network"])
    with pytest.raises(ValidationError, match="rate_limit_auth"):
        Settings(rate_limit_auth="lots/minute")
    assert ipaddress.ip_network("10.0.0.0/8") in parse_networks(
        Settings(trusted_proxies=["10.0.0.0/8"]).trusted_proxies
    )


def _refused(resp: httpx.Response) -> None:
    assert resp.status_code == 429, resp.text
    assert resp.json()["code"] == "RATE_LIMITED"
    assert int(resp.headers["Retry-After"]) >= 1


async def test_each_window_refuses_past_its_limit(api_factory: Any) -> None:
    api: Api = await api_factory(
        rate_limit_per_ip="10/minute", rate_limit_per_user="3/minute", rate_limit_auth="4/minute"
    )
    alice = await sms_login(api.client)  # 2 auth requests
    bob = await sms_login(api.client)  # 2 more: the auth window (4) is now full
    _refused(await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone(), "purpose": "login"}))
    for _ in range(3):
        data(await api.client.get("/api/v1/users/me", headers=alice.headers))
    _refused(await api.client.get("/api/v1/users/me", headers=alice.headers))  # alice's window
    data(await api.client.get("/api/v1/users/me", headers=bob.headers))  # bob has his own
    # A request takes a unit of each of its windows or, when one is full, of none: the address's
    # window (10) holds the 8 admitted above (4 auth, 3 alice, 1 bob), not the 2 refused ones.
    for _ in range(2):
        data(await api.client.get("/api/v1/billing/plans"))
    _refused(await api.client.get("/api/v1/billing/plans"))
    _refused(await api.client.get("/api/v1/users/me", headers=bob.headers))  # now the address's window
    # Probes are never limited.
    assert (await api.client.get("/health")).status_code == 200
    metrics = (await api.client.get("/metrics")).text
    assert 'wardrobe_rate_limited_total{endpoint_class="read"}' in metrics


async def test_task_creation_has_its_own_window(api_factory: Any) -> None:
    api: Api = await api_factory(rate_limit_task_create="2/minute")
    user = await sms_login(api.client)
    codes = []
    for _ in range(3):
        resp = await api.client.post("/api/v1/tasks", json={"feature": "none", "inputs": {}}, headers=user.headers)
        codes.append(resp.json()["code"])
    assert codes == ["FEATURE_UNAVAILABLE", "FEATURE_UNAVAILABLE", "RATE_LIMITED"]


async def test_forwarded_addresses_count_separately_only_behind_a_trusted_proxy(api_factory: Any) -> None:
    # The test client connects from 203.0.113.7 (tests/conftest.py).
    behind: Api = await api_factory(rate_limit_per_ip="2/minute", trusted_proxies=["203.0.113.0/24"])
    for client in ("198.51.100.1", "198.51.100.2"):
        for _ in range(2):
            data(await behind.client.get("/api/v1/billing/plans", headers={"X-Forwarded-For": client}))
    _refused(await behind.client.get("/api/v1/billing/plans", headers={"X-Forwarded-For": "198.51.100.1"}))

    exposed: Api = await api_factory(rate_limit_per_ip="2/minute")
    for client in ("198.51.100.1", "198.51.100.2"):
        data(await exposed.client.get("/api/v1/billing/plans", headers={"X-Forwarded-For": client}))
    # Spoofed headers do not buy a fresh window when nobody trusted set them.
    _refused(await exposed.client.get("/api/v1/billing/plans", headers={"X-Forwarded-For": "198.51.100.3"}))


async def test_login_and_sms_fail_closed_and_reads_fail_open_when_the_store_is_down(api: Api) -> None:
    user = await sms_login(api.client)
    from redis.asyncio import Redis

    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    api.infra.limiter = RateLimiter.for_redis(dead, "dead")
    try:
        sms = await api.client.post("/api/v1/auth/sms-codes", json={"phone": new_phone(), "purpose": "login"})
        assert sms.status_code == 503, sms.text
        assert sms.json()["code"] == "DEPENDENCY_UNAVAILABLE"
        assert sms.headers["Retry-After"]
        create = await api.client.post("/api/v1/tasks", json={"feature": "x", "inputs": {}}, headers=user.headers)
        assert create.json()["code"] == "DEPENDENCY_UNAVAILABLE"
        data(await api.client.get("/api/v1/users/me", headers=user.headers))  # reads go on
        ready = await api.client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["data"]["rate_limits"]["status"] == "degraded"
        metrics = (await api.client.get("/metrics")).text
        assert 'wardrobe_rate_limit_store_failures_total{policy="closed"}' in metrics
        assert 'wardrobe_rate_limit_store_failures_total{policy="open"}' in metrics
    finally:
        await dead.aclose()


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_limit_of_n_lets_exactly_n_through_across_two_processes(api: Api, tmp_path: Path) -> None:
    env = worker_env(api, tmp_path, worker_in_process="false", rate_limit_per_ip="10/minute", extra_providers="[]")
    ports = [free_port(), free_port()]
    servers = [
        spawn_worker(env, tmp_path / f"api{i}.log", "serve", "--host", "127.0.0.1", "--port", str(port))
        for i, port in enumerate(ports)
    ]
    try:
        async with httpx.AsyncClient(timeout=30) as client:

            async def both_up() -> bool:
                assert all(s.poll() is None for s in servers), "an API process exited; see its log"
                try:
                    for port in ports:
                        (await client.get(f"http://127.0.0.1:{port}/health")).raise_for_status()
                except httpx.HTTPError:
                    return False
                return True

            await wait_until(both_up, within=60, every=0.2)
            answers = await asyncio.gather(
                *(client.get(f"http://127.0.0.1:{ports[i % 2]}/api/v1/billing/plans") for i in range(40))
            )
    finally:
        stop_workers(servers)
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 30, statuses
