"""Captcha before SMS: risk rules per address, phone prefix and device ask for a Tencent Captcha
ticket, checked against the Tencent Cloud peer; a refused request costs the phone nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.fixtures.auth import data, new_phone
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_captcha import (
    OTHER_CAPTCHA_APP_ID,
    TEST_CAPTCHA_APP_ID,
    TEST_CAPTCHA_APP_SECRET_KEY,
    TICKET_TTL_SECONDS,
)
from tests.peers.tencent_cloud import TEST_SECRET_ID, TEST_SECRET_KEY

URL = "/api/v1/auth/sms-codes"
ATTACKER = "198.51.100.66"
Ticket = tuple[str, str]


@pytest.fixture
def captcha_api(api_factory: Any, tencent_peer: ServedTencentCloudPeer) -> Any:
    """An app with captcha on against the peer, every rule off unless given, behind a trusted
    proxy so that requests can come from any address (``X-Forwarded-For``)."""

    async def start(**rules: str) -> Api:
        api: Api = await api_factory(
            captcha_enabled=True,
            captcha_app_id=TEST_CAPTCHA_APP_ID,
            captcha_app_secret_key=TEST_CAPTCHA_APP_SECRET_KEY,
            captcha_endpoint=tencent_peer.host_port,
            captcha_scheme="http",
            tencent_secret_id=TEST_SECRET_ID,
            tencent_secret_key=TEST_SECRET_KEY,
            trusted_proxies=["203.0.113.7"],
            **{"captcha_rule_per_ip": "", "captcha_rule_per_phone_prefix": "", "captcha_rule_per_device": "", **rules},
        )
        return api

    return start


async def ask(
    api: Api, phone: str, *, address: str = ATTACKER, device: str | None = None, ticket: Ticket | None = None
) -> httpx.Response:
    headers = {"X-Forwarded-For": address}
    if device is not None:
        headers["X-Device-Id"] = device
    body: dict[str, Any] = {"phone": phone}
    if ticket is not None:
        body["captcha"] = {"ticket": ticket[0], "randstr": ticket[1]}
    return await api.client.post(URL, json=body, headers=headers)


def outcome(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["code"]


SENT = (200, "OK")
REQUIRED = (403, "CAPTCHA_REQUIRED")
INVALID = (400, "CAPTCHA_INVALID")


async def test_an_address_rule_asks_for_a_captcha_and_a_ticket_lets_the_code_through(
    captcha_api: Any, tencent_peer: ServedTencentCloudPeer
) -> None:
    api: Api = await captcha_api(captcha_rule_per_ip="2/hour")
    for _ in range(2):
        data(await ask(api, new_phone()))
    phone = new_phone()

    refused = await ask(api, phone)
    ticket = tencent_peer.captcha.issue()
    sent = await ask(api, phone, ticket=ticket)  # at once: the refusal took no cooldown
    reused = await ask(api, new_phone(), ticket=ticket)
    other_address = await ask(api, new_phone(), address="198.51.100.77")

    assert outcome(refused) == REQUIRED
    assert refused.json()["data"] == {"captcha_app_id": TEST_CAPTCHA_APP_ID}
    assert outcome(sent) == SENT
    login = await api.client.post(
        "/api/v1/auth/login", json={"method": "sms", "phone": phone, "code": sent.json()["data"]["debug_code"]}
    )
    assert login.status_code == 200, login.text
    assert outcome(reused) == INVALID
    assert outcome(other_address) == SENT
    checked = tencent_peer.captcha.verifications
    assert [(v.ticket, v.user_ip, v.app_id) for v in checked] == [(ticket[0], ATTACKER, TEST_CAPTCHA_APP_ID)] * 2
    assert [v.captcha_code for v in checked] == [1, 9]


async def test_an_address_rule_counts_an_ipv6_client_by_its_64(captcha_api: Any) -> None:
    api: Api = await captcha_api(captcha_rule_per_ip="1/hour")
    data(await ask(api, new_phone(), address="2001:db8:1:2::1"))

    same_block = await ask(api, new_phone(), address="2001:db8:1:2:ffff::9")
    next_block = await ask(api, new_phone(), address="2001:db8:1:3::1")

    assert outcome(same_block) == REQUIRED
    assert outcome(next_block) == SENT


async def test_a_phone_prefix_rule_counts_across_addresses_and_never_blocks(
    captcha_api: Any, tencent_peer: ServedTencentCloudPeer
) -> None:
    api: Api = await captcha_api(captcha_rule_per_phone_prefix="2/hour")
    for n in range(2):
        data(await ask(api, f"1371234{n:04d}", address=f"198.51.100.{10 + n}"))

    victim = await ask(api, "13712345678", address="198.51.100.99")
    other_prefix = await ask(api, "13712355678", address=ATTACKER)
    with_ticket = await ask(api, "13712345678", address="198.51.100.99", ticket=tencent_peer.captcha.issue())

    assert outcome(victim) == REQUIRED
    assert outcome(other_prefix) == SENT
    assert outcome(with_ticket) == SENT


async def test_a_device_rule_counts_per_device_id(captcha_api: Any) -> None:
    api: Api = await captcha_api(captcha_rule_per_device="1/hour")

    first = await ask(api, new_phone(), device="device-a")
    same_device = await ask(api, new_phone(), address="198.51.100.77", device="device-a")
    other_device = await ask(api, new_phone(), device="device-b")
    no_device = await ask(api, new_phone())
    too_long = await ask(api, new_phone(), device="x" * 129)
    not_an_id = await ask(api, new_phone(), device="a b")

    assert [outcome(r) for r in (first, same_device, other_device, no_device)] == [SENT, REQUIRED, SENT, SENT]
    for bad in (too_long, not_an_id):
        assert outcome(bad) == (422, "VALIDATION_FAILED")
        assert bad.json()["data"][0]["field"].lower() == "x-device-id"


async def test_failed_tickets_are_invalid_and_cost_nothing(
    captcha_api: Any, tencent_peer: ServedTencentCloudPeer
) -> None:
    api: Api = await captcha_api(captcha_rule_per_ip="1/hour")
    data(await ask(api, new_phone()))
    phone = new_phone()
    good_ticket, good_randstr = tencent_peer.captcha.issue()
    bad_tickets = [
        ("tr0-never-issued", "@abc"),
        (good_ticket, "@xyz"),  # wrong randstr
        tencent_peer.captcha.issue(age=TICKET_TTL_SECONDS + 1),
        tencent_peer.captcha.issue(OTHER_CAPTCHA_APP_ID),
        ("trerror_1001_190000001_1700000000", "@abc"),  # made up by the widget when offline
        tencent_peer.captcha.issue(evil=True),
    ]

    answers = [outcome(await ask(api, phone, ticket=t)) for t in bad_tickets]
    sent = await ask(api, phone, ticket=(good_ticket, good_randstr))

    assert answers == [INVALID] * len(bad_tickets)
    assert [v.captcha_code for v in tencent_peer.captcha.verifications] == [15, 7, 8, 16, 21, 1, 1]
    assert outcome(sent) == SENT


async def test_a_captcha_check_that_fails_answers_503_and_takes_nothing(
    captcha_api: Any, tencent_peer: ServedTencentCloudPeer
) -> None:
    api: Api = await captcha_api(captcha_rule_per_ip="1/hour")
    data(await ask(api, new_phone()))
    phone = new_phone()

    tencent_peer.fail_next(1, "InternalError")
    vendor_error = await ask(api, phone, ticket=tencent_peer.captcha.issue())
    tencent_peer.captcha.unpaid = True
    unpaid = await ask(api, phone, ticket=tencent_peer.captcha.issue())
    tencent_peer.captcha.unpaid = False
    sent = await ask(api, phone, ticket=tencent_peer.captcha.issue())

    assert outcome(vendor_error) == (503, "DEPENDENCY_UNAVAILABLE")
    assert outcome(unpaid) == (503, "DEPENDENCY_UNAVAILABLE")
    assert outcome(sent) == SENT


async def test_a_request_the_caps_refuse_spends_no_ticket(
    captcha_api: Any, tencent_peer: ServedTencentCloudPeer
) -> None:
    api: Api = await captcha_api(captcha_rule_per_ip="1/hour")
    phone = new_phone()
    data(await ask(api, phone))

    again = await ask(api, phone, ticket=tencent_peer.captcha.issue())  # within the phone's cooldown

    assert outcome(again) == (429, "RATE_LIMITED")
    assert tencent_peer.captcha.verifications == []


async def test_concurrent_requests_never_slip_past_a_rule(captcha_api: Any) -> None:
    api: Api = await captcha_api(captcha_rule_per_ip="3/hour")

    answers = await asyncio.gather(*(ask(api, new_phone()) for _ in range(10)))

    assert sorted(outcome(r) for r in answers) == sorted([SENT] * 3 + [REQUIRED] * 7)


async def test_without_captcha_the_ticket_field_is_still_validated(api: Api) -> None:
    resp = await api.client.post(URL, json={"phone": new_phone(), "captcha": {"ticket": "", "randstr": "@abc"}})

    assert outcome(resp) == (422, "VALIDATION_FAILED")
    assert resp.json()["data"][0]["field"] == "captcha.ticket"
