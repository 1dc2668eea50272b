"""Tencent Cloud Captcha (腾讯云验证码): the server-side check of a ticket the captcha widget gave
a client, ``DescribeCaptchaResult`` (2019-07-22) through the official SDK's async client.

The widget's callback hands the client a ``ticket`` and a ``randstr``; we send both with the
client's address, ``CaptchaType`` 9 and the app's ``CaptchaAppId``/``AppSecretKey``. A ticket
lives 5 minutes and passes once (Tencent enforces both). Only ``CaptchaCode`` 1 passes, and not
with ``EvilLevel`` 100 (the silent mode's "malicious" verdict). ``21`` (*diff*) is refused as
well: it is what Tencent answers for a ``trerror…`` ticket, which the widget makes up by itself
when it cannot reach Tencent, so anyone can make one; accepting it would switch the check off.

Failures of the ticket answer ``CAPTCHA_INVALID``; failures of the check itself (network, an
error from Tencent: bad credentials, no package, throttling) answer 503 and let nothing through,
since the check only runs when a risk rule asks for it. Neither the ticket nor the secret key is
ever logged.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import httpx
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from wardrobe.core.errors import AppError, DependencyUnavailable, ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import AUTH_EVENTS
from wardrobe.core.tencent import tencent_client
from wardrobe.settings import Settings

log = get_logger("wardrobe.auth.captcha")

CAPTCHA_TYPE = 9  # the only value DescribeCaptchaResult takes
_PASSED = 1
_MALICIOUS = 100  # EvilLevel
# "system internal error" (older documentation): Tencent's trouble, not the ticket's.
_VENDOR_TROUBLE = frozenset({26})
_CONNECT_TIMEOUT = 2.0


class TencentCaptcha:
    """Verifies tickets of one captcha app."""

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        app_id: int,
        app_secret_key: str,
        endpoint: str | None,
        scheme: str,
        timeout: float,
    ) -> None:
        self.app_id = app_id
        self._app_secret_key = app_secret_key
        # Here, not at the top: the SDK costs every process ~20 MiB, and the captcha is optional.
        from tencentcloud.captcha.v20190722.captcha_client_async import CaptchaClient
        from tencentcloud.common.abstract_client import LOGGER_NAME as SDK_LOGGER_NAME

        # Region "": the API takes none (the SDK then sends no X-TC-Region).
        self._client = tencent_client(
            CaptchaClient,
            secret_id=secret_id,
            secret_key=secret_key,
            region="",
            endpoint=endpoint,
            scheme=scheme,
            timeout=timeout,
            connect_timeout=min(timeout, _CONNECT_TIMEOUT),
        )
        # At DEBUG the SDK logs whole request bodies, which hold the ticket and AppSecretKey.
        sdk_logger = logging.getLogger(SDK_LOGGER_NAME)
        if sdk_logger.getEffectiveLevel() < logging.INFO:
            sdk_logger.setLevel(logging.INFO)

    async def verify(self, *, ticket: str, randstr: str, user_ip: str) -> None:
        """Return if Tencent says the ticket passes; raise ``CAPTCHA_INVALID`` if it does not,
        ``DEPENDENCY_UNAVAILABLE`` if Tencent cannot say."""
        from tencentcloud.captcha.v20190722 import models  # loaded with the client (__init__)

        request = models.DescribeCaptchaResultRequest()
        request.CaptchaType = CAPTCHA_TYPE
        request.Ticket = ticket
        request.Randstr = randstr
        request.UserIp = user_ip
        request.CaptchaAppId = self.app_id
        request.AppSecretKey = self._app_secret_key
        try:
            response = await self._client.DescribeCaptchaResult(request)
        except TencentCloudSDKException as exc:
            self._unavailable(str(exc.code or "unexpected_response"))
        except httpx.HTTPError as exc:
            self._unavailable(type(exc).__name__)
        except (ValueError, KeyError, TypeError) as exc:  # a body that is not the documented JSON
            self._unavailable(type(exc).__name__)
        code, evil = response.CaptchaCode, response.EvilLevel
        if code == _PASSED and evil != _MALICIOUS:
            AUTH_EVENTS.labels("captcha", "passed").inc()
            return
        if code in _VENDOR_TROUBLE:
            self._unavailable(f"CaptchaCode {code}")
        AUTH_EVENTS.labels("captcha", "rejected").inc()
        log.warning("captcha_rejected", captcha_code=code, evil_level=evil)
        raise AppError(ErrorCode.CAPTCHA_INVALID, detail=f"CaptchaCode {code}")

    @staticmethod
    def _unavailable(why: str) -> NoReturn:
        AUTH_EVENTS.labels("captcha", "unavailable").inc()
        log.error("captcha_check_failed", vendor_code=why)
        raise DependencyUnavailable(detail="captcha check failed")

    async def aclose(self) -> None:
        await self._client.close()


def build_captcha(settings: Settings) -> TencentCaptcha | None:
    if not settings.captcha_enabled:
        return None
    return TencentCaptcha(
        secret_id=settings.tencent_secret_id,
        secret_key=settings.tencent_secret_key.get_secret_value(),
        app_id=settings.captcha_app_id,
        app_secret_key=settings.captcha_app_secret_key.get_secret_value(),
        endpoint=settings.captcha_endpoint or None,
        scheme=settings.captcha_scheme,
        timeout=settings.captcha_timeout_seconds,
    )
