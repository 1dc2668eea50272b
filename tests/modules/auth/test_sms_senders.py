"""The SMS senders: console (development) and Tencent Cloud against the local Tencent peer."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.peers.fixtures import PeerClock, ServedTencentCloudPeer
from tests.peers.tencent_cloud import (
    TEST_REGION,
    TEST_SDK_APP_ID,
    TEST_SECRET_ID,
    TEST_SECRET_KEY,
    TEST_SIGN_NAME,
    TEST_TEMPLATE_ID,
    SmsTemplate,
)
from wardrobe.modules.auth.sms_senders import (
    ConsoleSmsSender,
    SmsRateLimitedError,
    SmsSender,
    SmsSendError,
    TencentSmsSender,
)

PHONE = "+8613812345678"
MASKED = "138****5678"
CODE = "482913"

SenderFactory = Callable[..., TencentSmsSender]


def _assert_nothing_sensitive(logs: Sequence[Mapping[str, Any]]) -> None:
    text = repr(logs)
    assert CODE not in text
    assert "13812345678" not in text


@pytest.fixture
async def tencent_sender(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[SenderFactory]:
    senders: list[TencentSmsSender] = []

    def make(**overrides: Any) -> TencentSmsSender:
        options: dict[str, Any] = {
            "secret_id": TEST_SECRET_ID,
            "secret_key": TEST_SECRET_KEY,
            "region": TEST_REGION,
            "sdk_app_id": TEST_SDK_APP_ID,
            "sign_name": TEST_SIGN_NAME,
            "template_id": TEST_TEMPLATE_ID,
            "endpoint": tencent_peer.host_port,
            "scheme": "http",
            "timeout": 5.0,
        } | overrides
        sender = TencentSmsSender(**options)
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.aclose()


def _closed_port() -> int:
    # A port that was free a moment ago and that nothing listens on now.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- console ---------------------------------------------------------------------------------


async def test_console_sender_keeps_the_code_and_logs_only_a_masked_phone() -> None:
    sender = ConsoleSmsSender()
    as_protocol: SmsSender = sender

    with capture_logs() as logs:
        result = await as_protocol.send_code(PHONE, CODE, 5)

    assert as_protocol.returns_debug_code is True
    assert result.provider == "console"
    assert sender.last_code_for(PHONE) == CODE
    assert sender.last_code_for("+8613900139000") is None
    assert logs
    assert logs[0]["phone"] == MASKED
    _assert_nothing_sensitive(logs)


# -- Tencent Cloud ---------------------------------------------------------------------------


async def test_tencent_sender_delivers_code_and_ttl(
    tencent_peer: ServedTencentCloudPeer, tencent_sender: SenderFactory
) -> None:
    sender: SmsSender = tencent_sender()

    result = await sender.send_code(PHONE, CODE, 5)

    assert sender.returns_debug_code is False
    assert result.provider == "tencent"
    assert result.serial_no
    assert result.fee == 1
    assert tencent_peer.last_params_for(PHONE) == [CODE, "5"]
    [sent] = tencent_peer.sent
    assert (sent.template_id, sent.sign_name, sent.sdk_app_id) == (
        TEST_TEMPLATE_ID,
        TEST_SIGN_NAME,
        TEST_SDK_APP_ID,
    )


async def test_tencent_sender_can_omit_the_ttl_parameter(
    tencent_peer: ServedTencentCloudPeer, tencent_sender: SenderFactory
) -> None:
    tencent_peer.templates["100002"] = SmsTemplate(1, verification=True)

    await tencent_sender(template_id="100002", include_ttl_param=False).send_code(PHONE, CODE, 5)

    assert tencent_peer.last_params_for(PHONE) == [CODE]


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({}, "LimitExceeded.PhoneNumberThirtySecondLimit"),
        ({"per_30s": 10, "per_hour": 1}, "LimitExceeded.PhoneNumberOneHourLimit"),
        ({"per_30s": 10, "per_hour": 10, "per_day": 1}, "LimitExceeded.PhoneNumberDailyLimit"),
    ],
    ids=["30s", "hour", "day"],
)
async def test_frequency_limits_raise_rate_limited_without_retry(
    tencent_peer: ServedTencentCloudPeer,
    tencent_sender: SenderFactory,
    limits: dict[str, int],
    expected: str,
) -> None:
    for name, value in limits.items():
        setattr(tencent_peer, name, value)
    sender = tencent_sender()
    await sender.send_code(PHONE, CODE, 5)

    with capture_logs() as logs, pytest.raises(SmsRateLimitedError) as failure:
        await sender.send_code(PHONE, "112233", 5)

    assert failure.value.code == expected
    assert tencent_peer.requests_received == 2
    assert len(tencent_peer.sent) == 1
    assert any(entry.get("error_code") == expected and entry.get("phone") == MASKED for entry in logs)
    _assert_nothing_sensitive(logs)


async def test_limit_resets_when_the_window_passes(
    tencent_peer: ServedTencentCloudPeer, tencent_sender: SenderFactory, peer_clock: PeerClock
) -> None:
    sender = tencent_sender()
    await sender.send_code(PHONE, CODE, 5)
    peer_clock.advance(31)

    await sender.send_code(PHONE, "112233", 5)

    assert tencent_peer.last_params_for(PHONE) == ["112233", "5"]


async def test_internal_error_is_retried_once(
    tencent_peer: ServedTencentCloudPeer, tencent_sender: SenderFactory
) -> None:
    tencent_peer.fail_next(1, "InternalError.Timeout")

    result = await tencent_sender().send_code(PHONE, CODE, 5)

    assert result.serial_no
    assert tencent_peer.requests_received == 2
    assert len(tencent_peer.sent) == 1


async def test_internal_error_twice_gives_up(
    tencent_peer: ServedTencentCloudPeer, tencent_sender: SenderFactory
) -> None:
    tencent_peer.fail_next(2)

    with capture_logs() as logs, pytest.raises(SmsSendError) as failure:
        await tencent_sender().send_code(PHONE, CODE, 5)

    assert failure.type is SmsSendError
    assert failure.value.code == "InternalError.OtherError"
    assert tencent_peer.requests_received == 2
    assert tencent_peer.sent == []
    _assert_nothing_sensitive(logs)


async def test_gateway_error_is_retried_once(
    tencent_peer: ServedTencentCloudPeer, tencent_sender: SenderFactory
) -> None:
    tencent_peer.http_error_next(1)

    await tencent_sender().send_code(PHONE, CODE, 5)

    assert tencent_peer.requests_received == 2
    assert len(tencent_peer.sent) == 1


async def test_unreachable_endpoint_is_a_network_error(tencent_sender: SenderFactory) -> None:
    sender = tencent_sender(endpoint=f"127.0.0.1:{_closed_port()}")

    with pytest.raises(SmsSendError) as failure:
        await sender.send_code(PHONE, CODE, 5)

    assert failure.value.code == "NetworkError"


@pytest.mark.parametrize(
    ("overrides", "phone", "expected"),
    [
        ({"secret_key": "another-fake-key"}, PHONE, "AuthFailure.SignatureFailure"),
        ({"sdk_app_id": "1400999999"}, PHONE, "InvalidParameterValue.SdkAppIdNotExist"),
        ({"template_id": "999999"}, PHONE, "FailedOperation.TemplateIncorrectOrUnapproved"),
        ({"sign_name": ""}, PHONE, "FailedOperation.SignatureIncorrectOrUnapproved"),
        ({}, "+86123", "InvalidParameterValue.IncorrectPhoneNumber"),
    ],
    ids=["signature", "sdk-app-id", "template", "sign-name", "phone"],
)
async def test_other_failures_raise_send_error_without_retry(
    tencent_peer: ServedTencentCloudPeer,
    tencent_sender: SenderFactory,
    overrides: dict[str, str],
    phone: str,
    expected: str,
) -> None:
    with pytest.raises(SmsSendError) as failure:
        await tencent_sender(**overrides).send_code(phone, CODE, 5)

    assert failure.type is SmsSendError
    assert failure.value.code == expected
    assert tencent_peer.requests_received == 1


def test_scheme_must_be_http_or_https() -> None:
    with pytest.raises(ValueError, match="scheme"):
        TencentSmsSender(
            secret_id=TEST_SECRET_ID,
            secret_key=TEST_SECRET_KEY,
            region=TEST_REGION,
            sdk_app_id=TEST_SDK_APP_ID,
            sign_name=TEST_SIGN_NAME,
            template_id=TEST_TEMPLATE_ID,
            scheme="ftp",
        )


def test_rate_limited_is_a_send_error() -> None:
    assert issubclass(SmsRateLimitedError, SmsSendError)
    assert SmsRateLimitedError("LimitExceeded.PhoneNumberDailyLimit").code == "LimitExceeded.PhoneNumberDailyLimit"
