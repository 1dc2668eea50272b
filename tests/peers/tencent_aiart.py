"""The aiart service of the Tencent Cloud peer (aiart 2022-12-29, design/protocols.md §8): the sync
image actions ``ImageInpaintingRemoval``, ``ImageOutpainting``, ``RefineImage``,
``ReplaceBackground`` and ``ChangeClothes``.

Each checks its inputs the way Tencent documents them: where an image may come as base64 or URL,
exactly one of the two is required (the peer is stricter than Tencent, which takes the URL when
both come, so a caller sending both is caught); base64 must decode to an image under 6 MB of text
and 5000 px a side; a mask must match its image's size. The answer is a small real PNG, as base64
or (``RspImgType=url``) as a URL on the peer that answers 404 after an hour (peer clock).

Content: an image whose base64 bytes or URL contain "unsafe" (a PNG text chunk will do) is refused
with ``OperationDenied.ImageIllegalDetected``, a prompt containing it with
``OperationDenied.TextIllegalDetected``. ``limit_jobs_next(n)`` refuses the next n calls with
``RequestLimitExceeded.JobNumExceed`` (the account's queue is full).

The peer's lock is held by the caller of every action and taken by the test hooks.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from tests.peers.tencent_hunyuan import result_png

if TYPE_CHECKING:
    from tests.peers.tencent_cloud import Tc3Caller

AIART_VERSION = "2022-12-29"
AIART_REGIONS = frozenset({"ap-guangzhou", "ap-beijing", "ap-shanghai"})
AIART_RESULT_PREFIX = "/aiart/results"
RESULT_TTL_SECONDS = 3600
MAX_BASE64_CHARS = 6 * 1024 * 1024
MAX_SIDE = 5000
_ILLEGAL_IMAGE = "OperationDenied.ImageIllegalDetected"
_ILLEGAL_TEXT = "OperationDenied.TextIllegalDetected"
_BAD_VALUE = "InvalidParameterValue.ParameterValueError"

RaiseError = Callable[[str, str], Exception]
Handler = Callable[["Tc3Caller", dict[str, Any]], dict[str, Any]]


@dataclass
class AiartService:
    clock: Callable[[], float]
    error: RaiseError
    lock: threading.Lock
    calls: Counter[str] = field(default_factory=Counter)  # successful calls per action
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (action, params) accepted
    results: dict[str, float] = field(default_factory=dict)  # URL result id -> issued at
    _job_limits: int = 0

    def actions(self) -> dict[str, tuple[str, str, Handler]]:
        """Action -> (service, version, handler), for the Tencent Cloud peer's dispatch."""
        handlers: dict[str, Handler] = {
            "ImageInpaintingRemoval": self._inpainting_removal,
            "ImageOutpainting": self._outpainting,
            "RefineImage": self._refine,
            "ReplaceBackground": self._replace_background,
            "ChangeClothes": self._change_clothes,
        }
        return {name: ("aiart", AIART_VERSION, handler) for name, handler in handlers.items()}

    # -- test hooks ----------------------------------------------------------------------------

    def limit_jobs_next(self, count: int) -> None:
        with self.lock:
            self._job_limits += count

    def result_image(self, result_id: str) -> bytes | None:
        with self.lock:
            issued = self.results.get(result_id)
            if issued is None or self.clock() - issued >= RESULT_TTL_SECONDS:
                return None
            return result_png()

    # -- actions -------------------------------------------------------------------------------

    def _inpainting_removal(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        size = self._image(params, "InputImage", "InputUrl")
        mask_size = self._image(params, "Mask", "MaskUrl")
        if size and mask_size and size != mask_size:
            raise self.error(_BAD_VALUE, "Mask must have the input image's resolution.")
        return self._answer("ImageInpaintingRemoval", caller, params)

    def _outpainting(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("Ratio") not in ("1:1", "4:3", "3:4", "16:9", "9:16"):
            raise self.error(_BAD_VALUE, "Ratio is not supported.")
        self._image(params, "InputImage", "InputUrl")
        return self._answer("ImageOutpainting", caller, params)

    def _refine(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._image(params, "InputImage", "InputUrl")
        return self._answer("RefineImage", caller, params)

    def _replace_background(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._url(params, "ProductUrl", required=True)
        self._url(params, "MaskUrl", required=False)
        prompt = params.get("Prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise self.error("MissingParameter", "The parameter `Prompt` is missing.")
        if len(prompt) > 256 or len(str(params.get("NegativePrompt") or "")) > 256:
            raise self.error("InvalidParameterValue.TextLengthExceed", "Prompt is too long.")
        if "unsafe" in prompt:
            raise self.error(_ILLEGAL_TEXT, "文本包含违规内容")
        return self._answer("ReplaceBackground", caller, params)

    def _change_clothes(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._url(params, "ModelUrl", required=True)
        self._url(params, "ClothesUrl", required=True)
        if params.get("ClothesType") not in ("Upper-body", "Lower-body", "Dress"):
            raise self.error(_BAD_VALUE, "ClothesType must be Upper-body, Lower-body or Dress.")
        return self._answer("ChangeClothes", caller, params)

    # -- internals -----------------------------------------------------------------------------

    def _answer(self, action: str, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        if self._job_limits:
            self._job_limits -= 1
            raise self.error("RequestLimitExceeded.JobNumExceed", "同时处理的任务数过多，请稍后重试")
        kind = params.get("RspImgType", "base64")
        if kind not in ("base64", "url"):
            raise self.error(_BAD_VALUE, "RspImgType must be base64 or url.")
        self.calls[action] += 1
        self.requests.append((action, dict(params)))
        if kind == "url":
            result_id = uuid.uuid4().hex
            self.results[result_id] = self.clock()
            return {"ResultImage": f"http://{caller.host}{AIART_RESULT_PREFIX}/{result_id}.png"}
        return {"ResultImage": base64.b64encode(result_png()).decode("ascii")}

    def _url(self, params: dict[str, Any], name: str, *, required: bool) -> None:
        url = params.get(name)
        if url is None or url == "":
            if required:
                raise self.error("MissingParameter", f"The parameter `{name}` is missing.")
            return
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise self.error("InvalidParameterValue.UrlIllegal", f"{name} is not a URL.")
        if "unsafe" in url:
            raise self.error(_ILLEGAL_IMAGE, "图片包含违规内容")

    def _image(self, params: dict[str, Any], data_name: str, url_name: str) -> tuple[int, int] | None:
        """Checks one image given as base64 or URL; its size when it came as base64."""
        data, url = params.get(data_name), params.get(url_name)
        if (data is None) == (url is None):
            raise self.error(_BAD_VALUE, f"Exactly one of {data_name} and {url_name} is required.")
        if url is not None:
            self._url(params, url_name, required=True)
            return None
        if not isinstance(data, str) or not data:
            raise self.error("InvalidParameterValue.ImageEmpty", f"{data_name} is empty.")
        if len(data) >= MAX_BASE64_CHARS:
            raise self.error("FailedOperation.ImageSizeExceed", "The image is over 6 MB as base64.")
        try:
            raw = base64.b64decode(data, validate=True)
            with Image.open(io.BytesIO(raw)) as image:
                size = image.size
        except (binascii.Error, ValueError, OSError):
            raise self.error("FailedOperation.ImageDecodeFailed", "The image could not be decoded.") from None
        if max(size) >= MAX_SIDE:
            raise self.error("FailedOperation.ImageResolutionExceed", "The image is too large.")
        if b"unsafe" in raw:
            raise self.error(_ILLEGAL_IMAGE, "图片包含违规内容")
        return size
