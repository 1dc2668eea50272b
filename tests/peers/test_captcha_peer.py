"""The Captcha service of the Tencent Cloud peer answers DescribeCaptchaResult as Tencent documents
it: checked with the official async SDK client and with raw signed requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tencentcloud.captcha.v20190722 import models
from tencentcloud.captcha.v20190722.captcha_client_async import CaptchaClient
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_captcha import (
    CAPTCHA_VERSION,
    OTHER_CAPTCHA_APP_ID,
    TEST_CAPTCHA_APP_ID,
    TEST_CAPTCHA_APP_SECRET_KEY,
    TICKET_TTL_SECONDS,
)
from tests.peers.tencent_cloud import TEST_SECRET_ID, TEST_SECRET_KEY, signed_headers_for


def _client(peer: ServedTencentCloudPeer, secret_key: str = TEST_SECRET_KEY) -> CaptchaClient:
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=peer.host_port, protocol="http", reqTimeout=5))
    # Region "": the API takes none, and the SDK then sends no X-TC-Region.
    return CaptchaClient(Credential(TEST_SECRET_ID, secret_key), "", profile)


@pytest.fixture
async def captcha(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[CaptchaClient]:
    client = _client(tencent_peer)
    yield client
    await client.close()


def describe(ticket: str, randstr: str, **fields: Any) -> models.DescribeCaptchaResultRequest:
    request = models.DescribeCaptchaResultRequest()
    request.CaptchaType = 9
    request.Ticket = ticket
    request.Randstr = randstr
    request.UserIp = "203.0.113.7"
    request.CaptchaAppId = TEST_CAPTCHA_APP_ID
    request.AppSecretKey = TEST_CAPTCHA_APP_SECRET_KEY
    for name, value in fields.items():
        setattr(request, name, value)
    return request


async def test_an_issued_ticket_passes_once(captcha: CaptchaClient, tencent_peer: ServedTencentCloudPeer) -> None:
    ticket, randstr = tencent_peer.captcha.issue()

    first = await captcha.DescribeCaptchaResult(describe(ticket, randstr, NeedGetCaptchaTime=1))
    again = await captcha.DescribeCaptchaResult(describe(ticket, randstr))

    assert (first.CaptchaCode, first.CaptchaMsg, first.EvilLevel) == (1, "OK", 0)
    assert first.GetCaptchaTime == int(tencent_peer.clock())
    assert first.RequestId
    assert (again.CaptchaCode, again.CaptchaMsg) == (9, "ticket reused")
    assert [v.user_ip for v in tencent_peer.captcha.verifications] == ["203.0.113.7"] * 2


async def test_ticket_failures_are_captcha_codes(captcha: CaptchaClient, tencent_peer: ServedTencentCloudPeer) -> None:
    ticket, randstr = tencent_peer.captcha.issue()
    old, old_randstr = tencent_peer.captcha.issue(age=TICKET_TTL_SECONDS + 1)
    other_app, other_randstr = tencent_peer.captcha.issue(OTHER_CAPTCHA_APP_ID)
    evil, evil_randstr = tencent_peer.captcha.issue(evil=True)

    cases = {
        "randstr": describe(ticket, "@xyz"),
        "expired": describe(old, old_randstr),
        "unknown": describe("tr0-not-issued-by-the-peer", randstr),
        "other_app": describe(other_app, other_randstr),
        "disaster_recovery": describe("trerror_1001_190000001_1700000000", "@abc"),
        "secret_key": describe(ticket, randstr, AppSecretKey="not-the-app-key"),
    }
    codes = {name: (await captcha.DescribeCaptchaResult(req)).CaptchaCode for name, req in cases.items()}
    flagged = await captcha.DescribeCaptchaResult(describe(evil, evil_randstr))
    # None of the failures used the ticket up.
    still_good = await captcha.DescribeCaptchaResult(describe(ticket, randstr))

    assert codes == {
        "randstr": 7,
        "expired": 8,
        "unknown": 15,
        "other_app": 16,
        "disaster_recovery": 21,
        "secret_key": 100,
    }
    assert (flagged.CaptchaCode, flagged.EvilLevel) == (1, 100)
    assert still_good.CaptchaCode == 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"CaptchaType": 8}, "InvalidParameter"),
        ({"CaptchaAppId": "190000001"}, "InvalidParameter"),
        ({"Ticket": None}, "MissingParameter"),
        ({"UserIp": ""}, "MissingParameter"),
        ({"AppSecretKey": None}, "MissingParameter"),
    ],
)
async def test_bad_requests_are_errors(
    captcha: CaptchaClient, tencent_peer: ServedTencentCloudPeer, fields: dict[str, Any], code: str
) -> None:
    ticket, randstr = tencent_peer.captcha.issue()

    with pytest.raises(TencentCloudSDKException) as refused:
        await captcha.DescribeCaptchaResult(describe(ticket, randstr, **fields))

    assert refused.value.code == code
    assert tencent_peer.captcha.verifications == []


async def test_signature_and_account_are_checked(tencent_peer: ServedTencentCloudPeer) -> None:
    ticket, randstr = tencent_peer.captcha.issue()
    forged = _client(tencent_peer, secret_key="not-the-secret-key")
    try:
        with pytest.raises(TencentCloudSDKException) as bad_signature:
            await forged.DescribeCaptchaResult(describe(ticket, randstr))
    finally:
        await forged.close()
    tencent_peer.captcha.unpaid = True
    client = _client(tencent_peer)
    try:
        with pytest.raises(TencentCloudSDKException) as unpaid:
            await client.DescribeCaptchaResult(describe(ticket, randstr))
    finally:
        await client.close()

    assert bad_signature.value.code == "AuthFailure.SignatureFailure"
    assert unpaid.value.code == "UnauthorizedOperation.Unauthorized"
    assert tencent_peer.captcha.verifications == []


async def test_a_raw_request_signed_for_another_service_is_refused(tencent_peer: ServedTencentCloudPeer) -> None:
    ticket, randstr = tencent_peer.captcha.issue()
    params = {
        "CaptchaType": 9,
        "Ticket": ticket,
        "Randstr": randstr,
        "UserIp": "203.0.113.7",
        "CaptchaAppId": TEST_CAPTCHA_APP_ID,
        "AppSecretKey": TEST_CAPTCHA_APP_SECRET_KEY,
    }
    body = json.dumps(params).encode()

    async def post(service: str) -> dict[str, Any]:
        headers = signed_headers_for(
            host=tencent_peer.host_port,
            body=body,
            timestamp=int(tencent_peer.clock()),
            service=service,
            action="DescribeCaptchaResult",
            version=CAPTCHA_VERSION,
        )
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.post(tencent_peer.base_url + "/", content=body, headers=headers)
        assert response.status_code == 200
        answer: dict[str, Any] = response.json()["Response"]
        return answer

    wrong_scope = await post("sms")
    right = await post("captcha")  # with an X-TC-Region the API ignores

    assert wrong_scope["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert (right["CaptchaCode"], right["CaptchaMsg"]) == (1, "OK")
