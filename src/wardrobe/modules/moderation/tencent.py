"""Tencent Cloud content moderation: TMS ``TextModeration`` and IMS ``ImageModeration`` (both
2020-12-29), through the official SDKs' async clients (httpx, TC3 signing) with a configurable
endpoint, so tests point them at the local peer.

Each answers a ``Suggestion`` of ``Block``, ``Review`` or ``Pass`` with the top ``Label``
(``Porn``, ``Illegal``, ``Abuse``…); we keep exactly those two, never the ``Keywords`` Tencent
found (they are the user's words). ``BizType`` picks the policy configured in Tencent's console.

Failures become ``ModerationUnavailable``: network errors, 5xx gateways, ``InternalError*``,
``RequestLimitExceeded*`` and ``ResourceUnavailable*`` are retryable; credentials, billing and
unknown codes are not (an operator must act). An image Tencent says it cannot analyse
(``InvalidParameter*Image*``, ``ResourceUnavailable.InvalidImageContent``…) is answered with a
``review`` verdict labelled ``Unanalysable``: the policy decides what review means for it.
Checks are read-only at Tencent, so repeating one after a lost answer is safe.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Generic, TypeVar

import httpx
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from wardrobe.core.logging import get_logger
from wardrobe.core.tencent import tencent_client
from wardrobe.modules.moderation.verdict import Decision, ModerationUnavailable, Verdict, worst

if TYPE_CHECKING:
    from tencentcloud.ims.v20201229.ims_client_async import ImsClient
    from tencentcloud.tms.v20201229.tms_client_async import TmsClient

# Our codes (ModerationUnavailable.code).
VENDOR_UNAVAILABLE = "moderation_vendor_unavailable"
VENDOR_BUSY = "moderation_vendor_busy"
VENDOR_REFUSED = "moderation_vendor_refused"  # credentials, billing, region, unknown codes
UNEXPECTED_RESPONSE = "moderation_unexpected_response"

MAX_TEXT_CHARS = 10_000  # TMS: at most 10,000 Unicode characters per call
# IMS: base64 of at most 10 MB; larger images are scaled down first (moderation needs no detail).
MAX_IMAGE_BYTES = 7 * 1024 * 1024
_SCALED_SIDE = 2048
_DATA_ID = re.compile(r"^[A-Za-z0-9_@#-]{1,64}$")
_SUGGESTIONS = {"Pass": Decision.PASS, "Review": Decision.REVIEW, "Block": Decision.BLOCK}
_SDK_NETWORK_ERROR = "ServerNetworkError"  # the SDK's code for a non-200 answer
_RETRYABLE_PREFIXES = ("InternalError", "RequestLimitExceeded", "ResourceUnavailable", "LimitExceeded")
_UNANALYSABLE = frozenset(
    {
        "InvalidParameter.ImageAspectRatioTooLarge",
        "InvalidParameter.ImageDataTooSmall",
        "InvalidParameter.ImageSizeTooSmall",
        "InvalidParameter.InvalidImageContent",
        "InvalidParameterValue.EmptyImageContent",
        "InvalidParameterValue.ImageSizeTooSmall",
        "InvalidParameterValue.InvalidImageContent",
        "InvalidParameterValue.InvalidFileContentSize",
        "ResourceUnavailable.ImageDownloadError",
        "ResourceUnavailable.InvalidImageContent",
    }
)
UNANALYSABLE_LABEL = "Unanalysable"

C = TypeVar("C", "TmsClient", "ImsClient")


def _data_id(value: str | None) -> str | None:
    return value if value is not None and _DATA_ID.fullmatch(value) else None


def _verdict(suggestion: object, label: object, source: str) -> Verdict:
    decision = _SUGGESTIONS.get(suggestion) if isinstance(suggestion, str) else None
    if decision is None:
        raise ModerationUnavailable(UNEXPECTED_RESPONSE, source, retryable=True)
    return Verdict(decision, label if isinstance(label, str) and label else "Normal", source)


class _TencentModeration(ABC, Generic[C]):
    """What TMS and IMS share: one constructor (both are called with the same arguments), the
    SDK client's lifetime and how a failure is read."""

    source = "tencent"
    default_timeout: float  # seconds for the whole request, when the caller gives none

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        region: str = "ap-guangzhou",
        biz_type: str | None = None,
        endpoint: str | None = None,
        scheme: str = "https",
        timeout: float | None = None,
        connect_timeout: float = 2.0,
    ) -> None:
        self.biz_type = biz_type or None
        self._client = tencent_client(
            self._sdk_client_class(),
            secret_id=secret_id,
            secret_key=secret_key,
            region=region,
            endpoint=endpoint,
            scheme=scheme,
            timeout=self.default_timeout if timeout is None else timeout,
            connect_timeout=connect_timeout,
        )
        self._log = get_logger(__name__)

    @classmethod
    @abstractmethod
    def _sdk_client_class(cls) -> type[C]:
        """The SDK's client class, imported when the first client is built: the SDK costs every
        process ~20 MiB, and deployments without Tencent moderation never need it."""

    async def aclose(self) -> None:
        await self._client.close()

    def _unavailable(self, exc: Exception, *, purpose: str) -> ModerationUnavailable:
        if isinstance(exc, httpx.TransportError):
            code, retryable, vendor_code, request_id = VENDOR_UNAVAILABLE, True, type(exc).__name__, None
        elif isinstance(exc, TencentCloudSDKException):
            vendor_code, request_id = str(exc.code or ""), exc.requestId
            if vendor_code == _SDK_NETWORK_ERROR or vendor_code.startswith(("InternalError", "ResourceUnavailable")):
                code, retryable = VENDOR_UNAVAILABLE, True
            elif vendor_code.startswith(_RETRYABLE_PREFIXES):
                code, retryable = VENDOR_BUSY, True
            else:
                code, retryable = VENDOR_REFUSED, False
        else:  # an answer the SDK could not read
            code, retryable, vendor_code, request_id = UNEXPECTED_RESPONSE, True, type(exc).__name__, None
        (self._log.info if retryable else self._log.warning)(
            "moderation_vendor_failed",
            backend=self.source,
            purpose=purpose,
            vendor_code=vendor_code,
            request_id=request_id,
            error_code=code,
        )
        return ModerationUnavailable(code, self.source, retryable=retryable)


class TencentTextModeration(_TencentModeration["TmsClient"]):
    """TMS ``TextModeration``. Text longer than one call allows is checked in pieces; the worst
    verdict wins."""

    source = "tms"
    default_timeout = 5.0

    @classmethod
    def _sdk_client_class(cls) -> type[TmsClient]:
        from tencentcloud.tms.v20201229.tms_client_async import TmsClient  # see the base class

        client_class: type[TmsClient] = TmsClient  # the SDK is untyped
        return client_class

    async def check(self, text: str, *, user_id: int | None, purpose: str, data_id: str | None = None) -> Verdict:
        pieces = [text[i : i + MAX_TEXT_CHARS] for i in range(0, len(text), MAX_TEXT_CHARS)] or [""]
        return worst([await self._check_piece(piece, user_id, purpose, data_id) for piece in pieces])

    async def _check_piece(self, text: str, user_id: int | None, purpose: str, data_id: str | None) -> Verdict:
        from tencentcloud.tms.v20201229 import models as tms_models  # loaded with the client

        request = tms_models.TextModerationRequest()
        request.Content = base64.b64encode(text.encode("utf-8")).decode("ascii")
        request.BizType = self.biz_type
        request.DataId = _data_id(data_id)
        if user_id is not None:
            user = tms_models.User()
            user.UserId = str(user_id)
            request.User = user
        try:
            response = await self._client.TextModeration(request)
        except (httpx.TransportError, TencentCloudSDKException, ValueError, KeyError, TypeError) as exc:
            raise self._unavailable(exc, purpose=purpose) from None
        return _verdict(response.Suggestion, response.Label, self.source)


class TencentImageModeration(_TencentModeration["ImsClient"]):
    """IMS ``ImageModeration`` on the image's bytes (``FileContent``): our objects are private,
    so Tencent is never given a URL to them."""

    source = "ims"
    default_timeout = 10.0

    @classmethod
    def _sdk_client_class(cls) -> type[ImsClient]:
        from tencentcloud.ims.v20201229.ims_client_async import ImsClient  # see the base class

        client_class: type[ImsClient] = ImsClient  # the SDK is untyped
        return client_class

    async def check(self, image: bytes, *, user_id: int | None, purpose: str, data_id: str | None = None) -> Verdict:
        from tencentcloud.ims.v20201229 import models as ims_models  # loaded with the client

        if len(image) > MAX_IMAGE_BYTES:
            image = await asyncio.to_thread(_scaled_down, image)
        request = ims_models.ImageModerationRequest()
        request.FileContent = base64.b64encode(image).decode("ascii")
        request.BizType = self.biz_type
        request.DataId = _data_id(data_id)
        if user_id is not None:
            user = ims_models.User()
            user.UserId = str(user_id)
            request.User = user
        try:
            response = await self._client.ImageModeration(request)
        except TencentCloudSDKException as exc:
            if str(exc.code or "") in _UNANALYSABLE:
                self._log.info("moderation_image_unanalysable", purpose=purpose, vendor_code=exc.code)
                return Verdict(Decision.REVIEW, UNANALYSABLE_LABEL, self.source)
            raise self._unavailable(exc, purpose=purpose) from None
        except (httpx.TransportError, ValueError, KeyError, TypeError) as exc:
            raise self._unavailable(exc, purpose=purpose) from None
        return _verdict(response.Suggestion, response.Label, self.source)


def _scaled_down(image: bytes) -> bytes:
    """A JPEG of at most ``_SCALED_SIDE`` px a side: well under the 10 MB base64 limit. Our images
    were verified when stored, so Pillow can open them."""
    from PIL import Image  # here: only oversized images need Pillow (~10 MiB in every process)

    with Image.open(io.BytesIO(image)) as opened:
        opened.thumbnail((_SCALED_SIDE, _SCALED_SIDE))
        out = io.BytesIO()
        opened.convert("RGB").save(out, format="JPEG", quality=90)
        return out.getvalue()


__all__: list[str] = [
    "MAX_IMAGE_BYTES",
    "MAX_TEXT_CHARS",
    "UNANALYSABLE_LABEL",
    "TencentImageModeration",
    "TencentTextModeration",
]
