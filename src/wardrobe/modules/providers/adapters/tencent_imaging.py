"""Tencent Cloud imaging (aiart 2022-12-29) as a sync provider.

The aiart actions that answer in the call, as shipped by ``tencentcloud-sdk-python-aiart`` 3.1.179:

============================  =========================  ===========================================
our action                    aiart action               inputs sent
============================  =========================  ===========================================
``erase``                     ``ImageInpaintingRemoval``  ``InputImage`` + ``Mask`` (base64)
``outpaint``                  ``ImageOutpainting``        ``InputImage`` (base64), ``Ratio``
``refine``                    ``RefineImage``             ``InputImage`` (base64)
``replace_background``        ``ReplaceBackground``       ``ProductUrl`` (+ ``MaskUrl``), ``Prompt``
``outfit_change``             ``ChangeClothes``           ``ModelUrl``, ``ClothesUrl``, ``ClothesType``
============================  =========================  ===========================================

Step inputs that are images are our stored objects (an object key, or ``{"object_key": …}``).
Where aiart takes base64 we send the bytes, so our storage is never exposed; the base64 text must
stay under 6 MB and each side under 5000 px (checked here, before any request). ``ReplaceBackground``
and ``ChangeClothes`` take URLs only: those actions exist only when the provider is given
``input_url`` (a short-lived signed download URL of ours for an object key).

Results come back as base64 (the default: stored directly, after the same checks as uploads, under
the keys of ``outputs.output_key_stem``) or, with ``response_type="url"``, as a URL valid for an
hour, handed to the ``outputs`` sink (SSRF-safe copy into ``results/``). Either way the step gets
``{"image": {"object_key", "content_type"}, "images": [...]}``.

**A call is not idempotent.** aiart takes no client token and bills each call, so a call whose
answer was lost after it went out is ``submit_unknown`` (not retried: a second call pays again),
as in ``hunyuan.py``. Only failures that prove nothing was sent are retryable.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import httpx
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from wardrobe.core.logging import get_logger
from wardrobe.modules.providers.adapters.hunyuan import (
    BAD_INPUT,
    PROVIDER_ACCOUNT_UNUSABLE,
    PROVIDER_BROKEN_CODES,
    PROVIDER_BUSY,
    SUBMIT_UNKNOWN,
    UNEXPECTED_RESPONSE,
    VENDOR_UNAVAILABLE,
)
from wardrobe.modules.providers.adapters.hunyuan import classify as classify_common
from wardrobe.modules.providers.adapters.tencent_clients import TencentClients
from wardrobe.modules.providers.base import ProviderError, StepContext
from wardrobe.modules.providers.outputs import OutputTarget, output_key_stem
from wardrobe.modules.storage.backend import ObjectExists, ObjectStorage
from wardrobe.modules.storage.images import ImageRejected, verify_image
from wardrobe.modules.storage.keys import EXTENSION_BY_CONTENT_TYPE

if TYPE_CHECKING:
    from tencentcloud.aiart.v20221229.aiart_client_async import AiartClient

ERASE = "erase"
OUTPAINT = "outpaint"
REFINE = "refine"
REPLACE_BACKGROUND = "replace_background"
OUTFIT_CHANGE = "outfit_change"
_BASE64_ACTIONS = frozenset({ERASE, OUTPAINT, REFINE})
_URL_ACTIONS = frozenset({REPLACE_BACKGROUND, OUTFIT_CHANGE})

MAX_BASE64_CHARS = 6 * 1024 * 1024  # aiart: "转成 Base64 字符串后小于 6MB"
MAX_SIDE = 5000  # "单边分辨率小于5000px"
MAX_PROMPT_CHARS = 256
MAX_PRODUCT_CHARS = 50
OUTPAINT_RATIOS = frozenset({"1:1", "4:3", "3:4", "16:9", "9:16"})
CLOTHES_TYPES = frozenset({"Upper-body", "Lower-body", "Dress"})
_SDK_NETWORK_ERROR = "ServerNetworkError"

# aiart codes on top of the ones Hunyuan shares (aiart/v20221229/errorcodes.py).
_AIART: dict[str, tuple[str, bool]] = {
    "RequestLimitExceeded.JobNumExceed": (PROVIDER_BUSY, True),  # the account's job queue is full
    "FailedOperation.ImageResolutionExceed": (BAD_INPUT, False),
    "FailedOperation.ImageSizeExceed": (BAD_INPUT, False),
    "FailedOperation.RequestEntityTooLarge": (BAD_INPUT, False),
    "FailedOperation.InnerError": (VENDOR_UNAVAILABLE, True),
    "FailedOperation.ServerError": (VENDOR_UNAVAILABLE, True),
    "FailedOperation.RpcFail": (VENDOR_UNAVAILABLE, True),
    "FailedOperation.RequestTimeout": (VENDOR_UNAVAILABLE, True),
    "ResourcesSoldOut.ChargeStatusException": (PROVIDER_ACCOUNT_UNUSABLE, False),
}

# Where a URL result goes: ``[{"fileUrl": url}]`` in, the step's image outputs out (app.py's
# ``build_vendor_outputs``).
OutputSink = Callable[[list[dict[str, Any]], StepContext], Awaitable[dict[str, Any]]]
InputUrl = Callable[[str], str]


def classify(vendor_code: str) -> tuple[str, bool]:
    """Our stable code for an aiart error code, and whether the same call may succeed later."""
    known = _AIART.get(vendor_code)
    return known if known is not None else classify_common(vendor_code)


def _sniff(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _object_key(inputs: Mapping[str, Any], name: str) -> str:
    value = inputs.get(name)
    key = value.get("object_key") if isinstance(value, dict) else value
    if not isinstance(key, str) or not key:
        raise ProviderError(BAD_INPUT, f"image input {name!r} is not a stored object")
    return key


def _text(inputs: Mapping[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value = inputs.get(name)
    if value is None or value == "":
        if required:
            raise ProviderError(BAD_INPUT, f"{name} is required")
        return None
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise ProviderError(BAD_INPUT, f"{name} must be text of at most {limit} characters")
    return value


def _client_class() -> type[AiartClient]:
    # Here, not at the top: the client module imports all its request models (~5-20 MiB in every
    # process), and only the processes that run steps call the vendor (TencentClients).
    from tencentcloud.aiart.v20221229.aiart_client_async import AiartClient

    client_class: type[AiartClient] = AiartClient  # the SDK is untyped
    return client_class


class TencentImagingProvider:
    """A ``SyncProvider`` over the aiart actions in the module docstring. Calls go out as the
    step's account (``ctx.account``) when operators configured accounts, as in ``hunyuan.py``."""

    accepts_accounts = True

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        storage: ObjectStorage,
        slug: str = "tencent_imaging",
        region: str = "ap-guangzhou",
        endpoint: str | None = None,
        scheme: str = "https",
        timeout: float = 30.0,
        connect_timeout: float = 3.0,
        max_pixels: int = 40_000_000,
        response_type: Literal["base64", "url"] = "base64",
        outputs: OutputSink | None = None,
        input_url: InputUrl | None = None,
        logo_add: bool | None = None,
    ) -> None:
        if scheme not in {"https", "http"}:
            raise ValueError("scheme must be 'https' or 'http'")
        if response_type not in ("base64", "url"):
            raise ValueError("response_type must be 'base64' or 'url'")
        if response_type == "url" and outputs is None:
            raise ValueError("URL results need an outputs sink to copy them into our storage")
        self.slug = slug
        self._storage = storage
        self._max_pixels = max_pixels
        self._response_type = response_type
        self._outputs = outputs
        self._input_url = input_url
        self._logo_add = logo_add
        self._clients = TencentClients(
            _client_class,
            secret_id=secret_id,
            secret_key=secret_key,
            region=region,
            endpoint=endpoint,
            scheme=scheme,
            timeout=timeout,
            connect_timeout=connect_timeout,
        )
        self._log = get_logger(__name__)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._clients.aclose()

    def supports(self, action: str) -> bool:
        return action in _BASE64_ACTIONS or (action in _URL_ACTIONS and self._input_url is not None)

    async def run(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        if not self.supports(action):
            raise ProviderError("unsupported_action")
        call, request = await self._request(action, inputs, self._clients.get(ctx.account))
        try:
            response = await call(request)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, action, ctx) from None
        except TencentCloudSDKException as exc:
            raise self._vendor_error(exc, action, ctx) from None
        except (ValueError, KeyError, TypeError):
            # A 200 that is not Tencent's JSON: the call may have run (and been billed).
            raise ProviderError(SUBMIT_UNKNOWN, "unreadable answer") from None
        result = getattr(response, "ResultImage", None)
        if not isinstance(result, str) or not result:
            raise ProviderError(UNEXPECTED_RESPONSE, "answer without ResultImage")
        if self._outputs is not None and self._response_type == "url":
            return await self._outputs([{"fileUrl": result}], ctx)
        return await self._store_base64(result, ctx)

    # -- requests --------------------------------------------------------------------------------

    async def _request(
        self, action: str, inputs: Mapping[str, Any], client: AiartClient
    ) -> tuple[Callable[[Any], Awaitable[Any]], Any]:
        from tencentcloud.aiart.v20221229 import models  # loaded with the client (__init__)

        request: Any
        if action == ERASE:
            request = models.ImageInpaintingRemovalRequest()
            request.InputImage = await self._base64(inputs, "image")
            request.Mask = await self._base64(inputs, "mask")
            call = client.ImageInpaintingRemoval
        elif action == OUTPAINT:
            ratio = inputs.get("ratio", "1:1")
            if ratio not in OUTPAINT_RATIOS:
                raise ProviderError(BAD_INPUT, f"ratio must be one of {sorted(OUTPAINT_RATIOS)}")
            request = models.ImageOutpaintingRequest()
            request.InputImage = await self._base64(inputs, "image")
            request.Ratio = ratio
            call = client.ImageOutpainting
        elif action == REFINE:
            request = models.RefineImageRequest()
            request.InputImage = await self._base64(inputs, "image")
            call = client.RefineImage
        elif action == REPLACE_BACKGROUND:
            request = models.ReplaceBackgroundRequest()
            request.ProductUrl = await self._url(inputs, "image")
            request.Prompt = _text(inputs, "prompt", MAX_PROMPT_CHARS, required=True)
            request.NegativePrompt = _text(inputs, "negative_prompt", MAX_PROMPT_CHARS)
            request.Product = _text(inputs, "product", MAX_PRODUCT_CHARS)
            if inputs.get("mask") is not None:
                request.MaskUrl = await self._url(inputs, "mask")
            request.Resolution = _text(inputs, "resolution", 16)
            call = client.ReplaceBackground
        else:  # OUTFIT_CHANGE
            clothes_type = inputs.get("clothes_type", "Upper-body")
            if clothes_type not in CLOTHES_TYPES:
                raise ProviderError(BAD_INPUT, f"clothes_type must be one of {sorted(CLOTHES_TYPES)}")
            request = models.ChangeClothesRequest()
            request.ModelUrl = await self._url(inputs, "person")
            request.ClothesUrl = await self._url(inputs, "garment")
            request.ClothesType = clothes_type
            call = client.ChangeClothes
        request.RspImgType = self._response_type
        if self._logo_add is not None and hasattr(request, "LogoAdd"):
            request.LogoAdd = 1 if self._logo_add else 0
        return call, request

    async def _read_image(self, inputs: Mapping[str, Any], name: str) -> bytes:
        key = _object_key(inputs, name)
        try:
            data = await self._storage.get(key)
        except (FileNotFoundError, KeyError):
            raise ProviderError(BAD_INPUT, f"image {name!r} not found") from None
        try:
            info = await verify_image(data, _sniff(data), self._max_pixels)
        except ImageRejected:
            raise ProviderError(BAD_INPUT, f"image {name!r} is not a usable image") from None
        if max(info.width, info.height) >= MAX_SIDE:
            raise ProviderError(BAD_INPUT, f"image {name!r} must be under {MAX_SIDE} px a side")
        return data

    async def _base64(self, inputs: Mapping[str, Any], name: str) -> str:
        data = await self._read_image(inputs, name)
        if 4 * ((len(data) + 2) // 3) >= MAX_BASE64_CHARS:
            raise ProviderError(BAD_INPUT, f"image {name!r} is over aiart's 6 MB base64 limit")
        return base64.b64encode(data).decode("ascii")

    async def _url(self, inputs: Mapping[str, Any], name: str) -> str:
        if self._input_url is None:  # URL actions are supported only with it
            raise ProviderError("unsupported_action")
        await self._read_image(inputs, name)  # exists, is an image, within aiart's limits
        return self._input_url(_object_key(inputs, name))

    # -- results ---------------------------------------------------------------------------------

    async def _store_base64(self, result: str, ctx: StepContext) -> dict[str, Any]:
        try:
            data = base64.b64decode(result, validate=True)
        except (binascii.Error, ValueError):
            raise ProviderError(UNEXPECTED_RESPONSE, "ResultImage is not base64") from None
        try:
            info = await verify_image(data, _sniff(data), self._max_pixels)
        except ImageRejected as exc:
            raise ProviderError("output_not_image", exc.message) from None
        target = OutputTarget(
            user_id=ctx.user_id,
            task_id=ctx.task_id,
            step_id=ctx.step_id,
            attempt=ctx.attempt,
            at=ctx.started_at or datetime.now(UTC),
        )
        key = f"{output_key_stem(target, 0)}.{EXTENSION_BY_CONTENT_TYPE[info.content_type]}"
        # A resumed run of the same attempt may have stored it already: same key, same kind of bytes.
        with contextlib.suppress(ObjectExists):
            await self._storage.put(key, data[: info.length], info.content_type, overwrite=False)
        image = {"object_key": key, "content_type": info.content_type}
        return {"image": image, "images": [image]}

    # -- errors ----------------------------------------------------------------------------------

    def _vendor_error(self, exc: TencentCloudSDKException, action: str, ctx: StepContext) -> ProviderError:
        vendor_code = str(exc.code or "")
        if vendor_code == _SDK_NETWORK_ERROR:
            # A non-200 from something in front of Tencent, which may have passed the call on.
            code, retryable = SUBMIT_UNKNOWN, False
        else:
            code, retryable = classify(vendor_code)
        log = self._log.warning if code in PROVIDER_BROKEN_CODES or code == SUBMIT_UNKNOWN else self._log.info
        log(
            "aiart call refused",
            action=action,
            task_id=ctx.task_id,
            step=ctx.step_id,
            vendor_code=vendor_code,
            request_id=exc.requestId,
            error_code=code,
        )
        return ProviderError(code, vendor_code, retryable=retryable, broken=code in PROVIDER_BROKEN_CODES)

    def _transport_error(self, exc: httpx.TransportError, action: str, ctx: StepContext) -> ProviderError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return ProviderError(VENDOR_UNAVAILABLE, type(exc).__name__, retryable=True)
        self._log.warning("aiart answer lost", action=action, task_id=ctx.task_id, step=ctx.step_id)
        return ProviderError(SUBMIT_UNKNOWN, type(exc).__name__)


__all__ = [
    "ERASE",
    "OUTFIT_CHANGE",
    "OUTPAINT",
    "REFINE",
    "REPLACE_BACKGROUND",
    "TencentImagingProvider",
    "classify",
]
