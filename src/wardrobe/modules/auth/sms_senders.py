"""Senders of SMS verification codes and account notices: a console sender for development and
Tencent Cloud SMS.

Neither ever logs the code or the full phone number. Tencent's SendSms is not idempotent, so a
failed send is retried at most once and only when the failure says nothing was delivered or is
ambiguous (``InternalError.*``, network); ``LimitExceeded.*`` is never retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

import httpx
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from wardrobe.core.logging import get_logger, mask_phone

if TYPE_CHECKING:
    from tencentcloud.sms.v20210111 import models as sms_models

_OK = "Ok"
_NETWORK_ERROR = "NetworkError"
_UNEXPECTED_RESPONSE = "UnexpectedResponse"
# The SDK reports a non-200 answer (a gateway in the way) under this code.
_SDK_NETWORK_ERROR = "ServerNetworkError"
_TRANSPORT_ERRORS = frozenset({_NETWORK_ERROR, _SDK_NETWORK_ERROR})


class SmsSendError(Exception):
    """The SMS was not (known to be) sent; ``code`` is the vendor's code or one of ours."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class SmsRateLimitedError(SmsSendError):
    """The vendor refused because of a frequency limit (``LimitExceeded.*``); retrying won't help."""


class SmsNotice(StrEnum):
    """Messages that tell the owner of a number what happened to their account."""

    PHONE_CHANGED = "phone_changed"  # to the old number: "bound to {1} now; not you? contact us"


@dataclass(frozen=True, slots=True)
class SmsSendResult:
    provider: str
    serial_no: str | None = None
    fee: int = 0


class SmsSender(Protocol):
    @property
    def returns_debug_code(self) -> bool:
        """Whether the API may echo the code back (development only)."""
        ...

    async def send_code(self, phone_e164: str, code: str, ttl_minutes: int) -> SmsSendResult: ...

    async def send_notice(self, phone_e164: str, notice: SmsNotice, params: list[str]) -> SmsSendResult: ...

    async def aclose(self) -> None: ...


class ConsoleSmsSender:
    """Development sender: records the code in memory instead of sending it."""

    returns_debug_code: bool = True

    def __init__(self) -> None:
        self._last_codes: dict[str, str] = {}
        self.notices: list[tuple[str, SmsNotice, list[str]]] = []
        self._log = get_logger(__name__)

    async def send_code(self, phone_e164: str, code: str, ttl_minutes: int) -> SmsSendResult:
        self._last_codes[phone_e164] = code
        self._log.info("sms code issued (console)", phone=mask_phone(phone_e164), ttl_minutes=ttl_minutes)
        return SmsSendResult(provider="console")

    async def send_notice(self, phone_e164: str, notice: SmsNotice, params: list[str]) -> SmsSendResult:
        self.notices.append((phone_e164, notice, list(params)))
        self._log.info("sms notice issued (console)", phone=mask_phone(phone_e164), notice=notice.value)
        return SmsSendResult(provider="console")

    def last_code_for(self, phone_e164: str) -> str | None:
        return self._last_codes.get(phone_e164)

    async def aclose(self) -> None:
        """Nothing to release; present so both senders close the same way."""


def _is_rate_limit(code: str) -> bool:
    return code.startswith("LimitExceeded.") or code == "RequestLimitExceeded"


def _is_retryable(code: str) -> bool:
    return code.startswith("InternalError") or code in _TRANSPORT_ERRORS


class TencentSmsSender:
    """Sends verification codes with Tencent Cloud SMS (SendSms 2021-01-11) via the async SDK.

    The template takes the code and, when ``include_ttl_param``, the validity in minutes.
    """

    returns_debug_code: bool = False
    _MAX_ATTEMPTS = 2  # one retry at most: SendSms has no idempotency key

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        region: str,
        sdk_app_id: str,
        sign_name: str,
        template_id: str,
        endpoint: str | None = None,
        scheme: str = "https",
        timeout: float = 5.0,
        include_ttl_param: bool = True,
        notice_templates: dict[SmsNotice, str] | None = None,
    ) -> None:
        if scheme not in {"https", "http"}:
            raise ValueError("scheme must be 'https' or 'http'")
        self._sdk_app_id = sdk_app_id
        self._sign_name = sign_name
        self._template_id = template_id
        self._include_ttl_param = include_ttl_param
        self._notice_templates = dict(notice_templates or {})
        # Here, not at the top: the SDK costs every process ~20 MiB, and most never send an SMS.
        from tencentcloud.common.abstract_client import LOGGER_NAME as SDK_LOGGER_NAME
        from tencentcloud.common.credential import Credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111.sms_client_async import SmsClient

        http_profile = HttpProfile(endpoint=endpoint, protocol=scheme, reqTimeout=timeout)
        # The region breaker stays off (the default): its fallback builds a wrong URL for a
        # custom endpoint.
        profile = ClientProfile(httpProfile=http_profile, disable_region_breaker=True)
        self._client = SmsClient(Credential(secret_id, secret_key), region, profile)
        self._log = get_logger(__name__)
        # At DEBUG the SDK logs whole request bodies, which hold the code and the phone number.
        sdk_logger = logging.getLogger(SDK_LOGGER_NAME)
        if sdk_logger.getEffectiveLevel() < logging.INFO:
            sdk_logger.setLevel(logging.INFO)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()

    async def send_code(self, phone_e164: str, code: str, ttl_minutes: int) -> SmsSendResult:
        params = [code, str(ttl_minutes)] if self._include_ttl_param else [code]
        return await self._send(phone_e164, self._template_id, params)

    async def send_notice(self, phone_e164: str, notice: SmsNotice, params: list[str]) -> SmsSendResult:
        template_id = self._notice_templates.get(notice)
        if not template_id:
            raise SmsSendError("TemplateNotConfigured", notice.value)
        return await self._send(phone_e164, template_id, params)

    async def _send(self, phone_e164: str, template_id: str, params: list[str]) -> SmsSendResult:
        masked = mask_phone(phone_e164)
        for attempt in range(1, self._MAX_ATTEMPTS + 1):
            try:
                return await self._send_once(phone_e164, template_id, params)
            except SmsRateLimitedError as exc:
                self._log.warning("sms rate limited", phone=masked, error_code=exc.code)
                raise
            except SmsSendError as exc:
                if _is_retryable(exc.code) and attempt < self._MAX_ATTEMPTS:
                    self._log.warning("sms send failed, retrying", phone=masked, error_code=exc.code)
                    continue
                self._log.error("sms send failed", phone=masked, error_code=exc.code, attempts=attempt)
                raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _send_once(self, phone_e164: str, template_id: str, params: list[str]) -> SmsSendResult:
        from tencentcloud.sms.v20210111 import models as sms_models  # loaded with the client (__init__)

        request = sms_models.SendSmsRequest()
        request.PhoneNumberSet = [phone_e164]
        request.SmsSdkAppId = self._sdk_app_id
        request.TemplateId = template_id
        request.TemplateParamSet = params
        if self._sign_name:
            request.SignName = self._sign_name
        try:
            response = await self._client.SendSms(request)
        except TencentCloudSDKException as exc:
            code = str(exc.code or _UNEXPECTED_RESPONSE)
            error = SmsRateLimitedError if _is_rate_limit(code) else SmsSendError
            raise error(code, str(exc.message or "")) from None
        except httpx.HTTPError as exc:
            # Timeouts and connection failures; the URL is not included, only the kind of failure.
            raise SmsSendError(_NETWORK_ERROR, type(exc).__name__) from None
        except (ValueError, KeyError, TypeError) as exc:
            # A body that is not the documented JSON (the SDK parses it itself).
            raise SmsSendError(_UNEXPECTED_RESPONSE, type(exc).__name__) from None
        return self._result_of(response)

    @staticmethod
    def _result_of(response: sms_models.SendSmsResponse) -> SmsSendResult:
        statuses = response.SendStatusSet or []
        if not statuses:
            raise SmsSendError(_UNEXPECTED_RESPONSE, "empty SendStatusSet")
        # One number per request, but every entry is checked so no failure slips through.
        for status in statuses:
            code = str(status.Code or _UNEXPECTED_RESPONSE)
            if code != _OK:
                error = SmsRateLimitedError if _is_rate_limit(code) else SmsSendError
                raise error(code, str(status.Message or ""))
        first = statuses[0]
        fee = first.Fee if isinstance(first.Fee, int) else 0
        return SmsSendResult(provider="tencent", serial_no=first.SerialNo or None, fee=fee)


__all__ = [
    "ConsoleSmsSender",
    "SmsNotice",
    "SmsRateLimitedError",
    "SmsSendError",
    "SmsSendResult",
    "SmsSender",
    "TencentSmsSender",
]
