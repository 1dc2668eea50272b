"""The Tencent Cloud peer rejects what Tencent would reject, checked with the official SDK (which
signs with the wall clock) and with raw signed requests (whose timestamp the test chooses)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models
from tencentcloud.sms.v20210111.sms_client_async import SmsClient

from tests.peers.fixtures import PeerClock, ServedTencentCloudPeer
from tests.peers.tencent_cloud import (
    SMS_VERSION,
    TEST_REGION,
    TEST_SDK_APP_ID,
    TEST_SECRET_ID,
    TEST_SECRET_KEY,
    TEST_SIGN_NAME,
    TEST_TEMPLATE_ID,
    TencentCloudPeer,
    signed_headers_for,
    utc_date,
)

PHONE = "+8613800138000"
CHINA_MORNING = datetime.fromisoformat("2025-03-01T09:00:00+08:00").timestamp()

SdkFactory = Callable[..., SmsClient]


@pytest.fixture
async def sdk(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[SdkFactory]:
    clients: list[SmsClient] = []

    def make(secret_id: str = TEST_SECRET_ID, secret_key: str = TEST_SECRET_KEY, token: str | None = None) -> SmsClient:
        profile = ClientProfile(httpProfile=HttpProfile(endpoint=tencent_peer.host_port, protocol="http", reqTimeout=5))
        client = SmsClient(Credential(secret_id, secret_key, token), TEST_REGION, profile)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def sms_request(
    *phones: str,
    template_id: str = TEST_TEMPLATE_ID,
    params: Sequence[str] = ("123456", "5"),
    sign_name: str | None = TEST_SIGN_NAME,
    sdk_app_id: str = TEST_SDK_APP_ID,
) -> models.SendSmsRequest:
    request = models.SendSmsRequest()
    request.PhoneNumberSet = list(phones or (PHONE,))
    request.SmsSdkAppId = sdk_app_id
    request.TemplateId = template_id
    request.TemplateParamSet = list(params)
    request.SignName = sign_name
    return request


def sms_body(*phones: str, params: Sequence[str] = ("123456", "5")) -> bytes:
    payload = {
        "PhoneNumberSet": list(phones or (PHONE,)),
        "SmsSdkAppId": TEST_SDK_APP_ID,
        "TemplateId": TEST_TEMPLATE_ID,
        "TemplateParamSet": list(params),
        "SignName": TEST_SIGN_NAME,
    }
    return json.dumps(payload).encode()


async def raw_post(
    peer: ServedTencentCloudPeer,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    timestamp: int | None = None,
    service: str = "sms",
    version: str = SMS_VERSION,
) -> httpx.Response:
    if headers is None:
        headers = signed_headers_for(
            host=peer.host_port,
            service=service,
            version=version,
            body=body,
            timestamp=int(peer.clock()) if timestamp is None else timestamp,
        )
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.post(peer.base_url + "/", content=body, headers=headers)


def error_code(response: httpx.Response) -> str | None:
    error: dict[str, str] | None = response.json()["Response"].get("Error")
    return error["Code"] if error else None


def statuses(response: httpx.Response) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = response.json()["Response"]["SendStatusSet"]
    return result


# -- TC3 verification ------------------------------------------------------------------------


async def test_sdk_request_is_accepted_and_recorded(tencent_peer: ServedTencentCloudPeer, sdk: SdkFactory) -> None:
    response = await sdk().SendSms(sms_request())

    [status] = response.SendStatusSet
    assert status.Code == "Ok"
    assert status.PhoneNumber == PHONE
    assert status.IsoCode == "CN"
    assert status.Fee == 1
    assert status.SerialNo
    assert response.RequestId
    assert tencent_peer.last_params_for(PHONE) == ["123456", "5"]
    [sent] = tencent_peer.sent
    assert (sent.template_id, sent.sign_name, sent.sdk_app_id) == (
        TEST_TEMPLATE_ID,
        TEST_SIGN_NAME,
        TEST_SDK_APP_ID,
    )


async def test_wrong_secret_key_is_signature_failure(tencent_peer: ServedTencentCloudPeer, sdk: SdkFactory) -> None:
    with pytest.raises(TencentCloudSDKException) as failure:
        await sdk(secret_key="another-fake-key").SendSms(sms_request())

    assert failure.value.code == "AuthFailure.SignatureFailure"
    assert failure.value.requestId
    assert tencent_peer.sent == []


async def test_unknown_secret_id_is_not_found(sdk: SdkFactory) -> None:
    with pytest.raises(TencentCloudSDKException) as failure:
        await sdk(secret_id="AKID-unknown-test-id").SendSms(sms_request())

    assert failure.value.code == "AuthFailure.SecretIdNotFound"


@pytest.mark.parametrize("offset", [310, -310])
async def test_skew_over_300_seconds_is_signature_expire(peer_clock: PeerClock, sdk: SdkFactory, offset: float) -> None:
    peer_clock.advance(offset)

    with pytest.raises(TencentCloudSDKException) as failure:
        await sdk().SendSms(sms_request())

    assert failure.value.code == "AuthFailure.SignatureExpire"


async def test_skew_within_300_seconds_is_accepted(peer_clock: PeerClock, sdk: SdkFactory) -> None:
    peer_clock.advance(-250)

    response = await sdk().SendSms(sms_request())

    assert response.SendStatusSet[0].Code == "Ok"


async def test_session_token_is_checked(tencent_peer: ServedTencentCloudPeer, sdk: SdkFactory) -> None:
    tencent_peer.session_tokens[TEST_SECRET_ID] = "test-session-token"

    with pytest.raises(TencentCloudSDKException) as failure:
        await sdk(token="another-session-token").SendSms(sms_request())
    response = await sdk(token="test-session-token").SendSms(sms_request())

    assert failure.value.code == "AuthFailure.TokenFailure"
    assert response.SendStatusSet[0].Code == "Ok"


async def test_errors_are_http_200_with_exact_json_content_type(tencent_peer: ServedTencentCloudPeer) -> None:
    body = sms_body()
    headers = signed_headers_for(
        secret_key="another-fake-key",
        host=tencent_peer.host_port,
        body=body,
        timestamp=int(tencent_peer.clock()),
    )

    response = await raw_post(tencent_peer, body, headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert error_code(response) == "AuthFailure.SignatureFailure"
    assert response.json()["Response"]["RequestId"]


async def test_tampered_body_is_signature_failure(tencent_peer: ServedTencentCloudPeer) -> None:
    headers = signed_headers_for(
        host=tencent_peer.host_port,
        body=sms_body(params=("123456", "5")),
        timestamp=int(tencent_peer.clock()),
    )

    response = await raw_post(tencent_peer, sms_body(params=("654321", "5")), headers=headers)

    assert error_code(response) == "AuthFailure.SignatureFailure"
    assert tencent_peer.sent == []


async def test_signature_covers_the_host_header(tencent_peer: ServedTencentCloudPeer) -> None:
    body = sms_body()
    headers = signed_headers_for(
        host="127.0.0.1:1",
        body=body,
        timestamp=int(tencent_peer.clock()),
    )
    headers["Host"] = tencent_peer.host_port

    response = await raw_post(tencent_peer, body, headers=headers)

    assert error_code(response) == "AuthFailure.SignatureFailure"


async def test_scope_must_name_the_service(tencent_peer: ServedTencentCloudPeer) -> None:
    response = await raw_post(tencent_peer, sms_body(), service="kms")

    assert error_code(response) == "AuthFailure.SignatureFailure"


async def test_scope_date_must_be_the_utc_date_of_the_timestamp(tencent_peer: ServedTencentCloudPeer) -> None:
    body = sms_body()
    timestamp = int(tencent_peer.clock())
    headers = signed_headers_for(
        host=tencent_peer.host_port,
        body=body,
        timestamp=timestamp,
    )
    headers["Authorization"] = headers["Authorization"].replace(utc_date(timestamp), utc_date(timestamp - 86_400))

    response = await raw_post(tencent_peer, body, headers=headers)

    assert error_code(response) == "AuthFailure.SignatureFailure"


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda auth: auth.replace("SignedHeaders=content-type;host", "SignedHeaders=host"),
        lambda auth: auth.replace("TC3-HMAC-SHA256", "HMAC-SHA256"),
        lambda auth: auth.replace("/tc3_request", "/request"),
        lambda auth: "",
    ],
    ids=["signed-headers", "algorithm", "terminator", "missing"],
)
async def test_malformed_authorization_is_rejected(
    tencent_peer: ServedTencentCloudPeer, rewrite: Callable[[str], str]
) -> None:
    body = sms_body()
    headers = signed_headers_for(
        host=tencent_peer.host_port,
        body=body,
        timestamp=int(tencent_peer.clock()),
    )
    headers["Authorization"] = rewrite(headers["Authorization"])

    response = await raw_post(tencent_peer, body, headers=headers)

    assert error_code(response) == "AuthFailure.InvalidAuthorization"


async def test_version_must_be_the_actions_version(tencent_peer: ServedTencentCloudPeer) -> None:
    response = await raw_post(tencent_peer, sms_body(), version="2019-07-11")

    assert error_code(response) == "NoSuchVersion"


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_changed_byte_breaks_the_signature(data: st.DataObject) -> None:
    # Drives the verifier directly: every single-byte change to a signed body must be caught.
    clock_now = 1_700_000_000.0
    peer = TencentCloudPeer(clock=lambda: clock_now)
    body = sms_body()
    headers = signed_headers_for(
        host="sms.tencentcloudapi.com",
        body=body,
        timestamp=int(clock_now),
    )
    index = data.draw(st.integers(0, len(body) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda value: value != body[index]))
    tampered = body[:index] + bytes([replacement]) + body[index + 1 :]
    lower = {name.lower(): value for name, value in headers.items()}

    _, _, answer = peer.handle(method="POST", path="/", query="", headers=lower, body=tampered)

    assert json.loads(answer)["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
    _, _, intact = peer.handle(method="POST", path="/", query="", headers=lower, body=body)
    assert "Error" not in json.loads(intact)["Response"]


# -- SendSms rules ---------------------------------------------------------------------------


async def test_unknown_sdk_app_id_is_a_response_error(sdk: SdkFactory) -> None:
    with pytest.raises(TencentCloudSDKException) as failure:
        await sdk().SendSms(sms_request(sdk_app_id="1400999999"))

    assert failure.value.code == "InvalidParameterValue.SdkAppIdNotExist"


async def test_malformed_number_gets_its_own_status(tencent_peer: ServedTencentCloudPeer, sdk: SdkFactory) -> None:
    response = await sdk().SendSms(sms_request(PHONE, "+86123", "13900139000"))

    codes = [status.Code for status in response.SendStatusSet]
    assert codes == ["Ok", "InvalidParameterValue.IncorrectPhoneNumber", "Ok"]
    assert response.SendStatusSet[2].PhoneNumber == "+8613900139000"
    assert len(tencent_peer.sent) == 2


@pytest.mark.parametrize(
    ("request_kwargs", "expected"),
    [
        ({"template_id": "999999"}, "FailedOperation.TemplateIncorrectOrUnapproved"),
        ({"params": ("123456",)}, "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"),
        ({"sign_name": None}, "FailedOperation.SignatureIncorrectOrUnapproved"),
        ({"sign_name": "未审核签名"}, "FailedOperation.SignatureIncorrectOrUnapproved"),
    ],
    ids=["unknown-template", "param-count", "no-sign-name", "unapproved-sign-name"],
)
async def test_template_and_signature_are_checked_per_number(
    tencent_peer: ServedTencentCloudPeer, sdk: SdkFactory, request_kwargs: dict[str, Any], expected: str
) -> None:
    response = await sdk().SendSms(sms_request(**request_kwargs))

    assert [status.Code for status in response.SendStatusSet] == [expected]
    assert tencent_peer.sent == []


async def test_international_numbers_need_no_sign_name(sdk: SdkFactory) -> None:
    response = await sdk().SendSms(sms_request("+85261234567", sign_name=None))

    [status] = response.SendStatusSet
    assert (status.Code, status.IsoCode) == ("Ok", "HK")


async def test_verification_parameters_must_be_short_digits(sdk: SdkFactory) -> None:
    with pytest.raises(TencentCloudSDKException) as failure:
        await sdk().SendSms(sms_request(params=("12ab56", "5")))

    assert failure.value.code == "InvalidParameterValue.TemplateParameterFormatError"


async def test_mixed_mainland_and_international_numbers_are_refused(sdk: SdkFactory) -> None:
    with pytest.raises(TencentCloudSDKException) as failure:
        await sdk().SendSms(sms_request(PHONE, "+85261234567"))

    assert failure.value.code == "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber"


async def test_at_most_200_numbers(sdk: SdkFactory) -> None:
    phones = [f"+86139{index:08d}" for index in range(201)]

    with pytest.raises(TencentCloudSDKException) as failure:
        await sdk().SendSms(sms_request(*phones))

    assert failure.value.code == "LimitExceeded.PhoneNumberCountLimit"


async def test_thirty_second_limit_per_number(peer_clock: PeerClock, sdk: SdkFactory) -> None:
    client = sdk()
    first = await client.SendSms(sms_request())
    second = await client.SendSms(sms_request(PHONE, "+8613900139000"))
    peer_clock.advance(31)
    third = await client.SendSms(sms_request())

    assert first.SendStatusSet[0].Code == "Ok"
    assert [status.Code for status in second.SendStatusSet] == [
        "LimitExceeded.PhoneNumberThirtySecondLimit",
        "Ok",
    ]
    assert third.SendStatusSet[0].Code == "Ok"


async def test_one_hour_limit_per_number(tencent_peer: ServedTencentCloudPeer, peer_clock: PeerClock) -> None:
    codes = []
    for _ in range(6):
        codes.append(statuses(await raw_post(tencent_peer, sms_body()))[0]["Code"])
        peer_clock.advance(31)
    peer_clock.advance(3600)
    after_an_hour = statuses(await raw_post(tencent_peer, sms_body()))[0]["Code"]

    assert codes == ["Ok"] * 5 + ["LimitExceeded.PhoneNumberOneHourLimit"]
    assert after_an_hour == "Ok"
    assert len(tencent_peer.sent_to(PHONE)) == 6


async def test_daily_limit_per_number_follows_the_china_calendar_day(
    tencent_peer: ServedTencentCloudPeer, peer_clock: PeerClock
) -> None:
    peer_clock.now = CHINA_MORNING
    codes = []
    for _hour in range(3):
        for _ in range(5):
            codes.append(statuses(await raw_post(tencent_peer, sms_body()))[0]["Code"])
            peer_clock.advance(31)
        peer_clock.advance(3600)
    peer_clock.now = CHINA_MORNING + 24 * 3600
    next_day = statuses(await raw_post(tencent_peer, sms_body()))[0]["Code"]

    assert codes[:10] == ["Ok"] * 10
    assert codes[10:] == ["LimitExceeded.PhoneNumberDailyLimit"] * 5
    assert next_day == "Ok"


async def test_limits_are_configurable(tencent_peer: ServedTencentCloudPeer, sdk: SdkFactory) -> None:
    tencent_peer.per_30s = 2
    client = sdk()

    codes = [(await client.SendSms(sms_request())).SendStatusSet[0].Code for _ in range(3)]

    assert codes == ["Ok", "Ok", "LimitExceeded.PhoneNumberThirtySecondLimit"]


async def test_fault_switch_answers_internal_errors(tencent_peer: ServedTencentCloudPeer, sdk: SdkFactory) -> None:
    tencent_peer.fail_next(1)
    client = sdk()

    with pytest.raises(TencentCloudSDKException) as failure:
        await client.SendSms(sms_request())
    response = await client.SendSms(sms_request())

    assert failure.value.code == "InternalError.OtherError"
    assert response.SendStatusSet[0].Code == "Ok"
    assert tencent_peer.requests_received == 2


async def test_http_fault_becomes_a_network_error_in_the_sdk(
    tencent_peer: ServedTencentCloudPeer, sdk: SdkFactory
) -> None:
    tencent_peer.http_error_next(1)

    with pytest.raises(TencentCloudSDKException) as failure:
        await sdk().SendSms(sms_request())

    assert failure.value.code == "ServerNetworkError"
