"""The content moderation services of the Tencent Cloud peer: TMS ``TextModeration`` and IMS
``ImageModeration`` (both 2020-12-29).

Verdicts are deterministic, so tests choose them:

- text (``Content`` is UTF-8 in base64): containing a word of ``TEXT_BLOCK_WORDS`` → ``Block``
  with Label ``Illegal``; of ``TEXT_REVIEW_WORDS`` → ``Review`` with Label ``Abuse``; else
  ``Pass``/``Normal``. The words found come back in ``Keywords``, as Tencent's do.
- images (``FileContent`` in base64, or ``FileUrl``): an image whose average colour is within
  ``COLOUR_TOLERANCE`` of magenta ``BLOCK_COLOUR`` → ``Block``/``Porn``; of cyan ``REVIEW_COLOUR``
  → ``Review``/``Sexy``; a ``FileUrl`` containing ``ims-block`` or ``ims-review`` likewise (the peer
  fetches nothing). Anything else → ``Pass``/``Normal``.

Requests are checked the way Tencent documents them: exactly one of ``FileContent``/``FileUrl``,
base64 that decodes to an image of at most 10 MB of base64, text of at most 10,000 characters,
a ``DataId`` of at most 64 of ``[A-Za-z0-9_@#-]``, a ``BizType`` the account has configured
(``biz_types``; ``None`` always works: the account's default policy). Errors are Tencent's codes.

The peer's lock is held by the caller of every action and taken by the test hooks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageStat

if TYPE_CHECKING:
    from tests.peers.tencent_cloud import Tc3Caller

MODERATION_VERSION = "2020-12-29"
TEXT_BLOCK_WORDS = ("违禁样本", "peer-block-word")
TEXT_REVIEW_WORDS = ("待审样本", "peer-review-word")
BLOCK_COLOUR = (255, 0, 255)
REVIEW_COLOUR = (0, 255, 255)
COLOUR_TOLERANCE = 40
MAX_TEXT_CHARS = 10_000
MAX_BASE64_CHARS = 10 * 1024 * 1024
_DATA_ID = re.compile(r"^[A-Za-z0-9_@#-]{1,64}$")

RaiseError = Callable[[str, str], Exception]
Handler = Callable[["Tc3Caller", dict[str, Any]], dict[str, Any]]


def coloured_png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    """A PNG of one colour: ``BLOCK_COLOUR`` or ``REVIEW_COLOUR`` to get those verdicts."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


@dataclass
class ModerationService:
    clock: Callable[[], float]
    error: RaiseError
    lock: threading.Lock
    biz_types: set[str] = field(default_factory=lambda: {"wardrobe_text", "wardrobe_image"})
    calls: Counter[str] = field(default_factory=Counter)  # answered checks per action
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (action, params) answered

    def actions(self) -> dict[str, tuple[str, str, Handler]]:
        """Action -> (service, version, handler), for the Tencent Cloud peer's dispatch."""
        return {
            "TextModeration": ("tms", MODERATION_VERSION, self._text),
            "ImageModeration": ("ims", MODERATION_VERSION, self._image),
        }

    # -- actions (called under the lock) -------------------------------------------------------

    def _text(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._common(params)
        content = params.get("Content")
        if content is None:
            raise self.error("MissingParameter", "The parameter `Content` is missing.")
        try:
            text = base64.b64decode(str(content), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise self.error("InvalidParameterValue.ErrTextContentType", "Content must be UTF-8 in base64.") from None
        if not text or len(text) > MAX_TEXT_CHARS:
            raise self.error("InvalidParameterValue.ErrTextContentLen", "Content must be 1 to 10000 characters.")
        if params.get("Type", "TEXT") not in ("TEXT", "TEXT_AIGC"):
            raise self.error("InvalidParameterValue.ErrType", "Type must be TEXT or TEXT_AIGC.")
        blocked = [w for w in TEXT_BLOCK_WORDS if w in text]
        review = [w for w in TEXT_REVIEW_WORDS if w in text]
        if blocked:
            suggestion, label, score, keywords = "Block", "Illegal", 99, blocked
        elif review:
            suggestion, label, score, keywords = "Review", "Abuse", 72, review
        else:
            suggestion, label, score, keywords = "Pass", "Normal", 0, []
        self.calls["TextModeration"] += 1
        self.requests.append(("TextModeration", dict(params)))
        detail = {
            "Label": label,
            "Suggestion": suggestion,
            "Keywords": keywords,
            "Score": score,
            "LibType": 2 if keywords else 0,
            "LibId": "",
            "LibName": "",
            "SubLabel": "",
            "Tags": [],
            "HitInfos": [],
        }
        return {
            "BizType": params.get("BizType") or "0",
            "Suggestion": suggestion,
            "Label": label,
            "SubLabel": "",
            "Score": score,
            "Keywords": keywords,
            "DetailResults": [detail] if keywords else [],
            "RiskDetails": [],
            "Extra": "",
            "DataId": params.get("DataId") or "",
            "ContextText": "",
            "HitType": "",
        }

    def _image(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._common(params)
        content, url = params.get("FileContent"), params.get("FileUrl")
        if content is None and url is None:
            raise self.error("InvalidParameterValue.EmptyImageContent", "One of FileContent and FileUrl is required.")
        if content is not None and url is not None:
            raise self.error("InvalidParameter.InvalidParameter", "Give FileContent or FileUrl, not both.")
        md5 = ""
        if content is not None:
            if not isinstance(content, str) or len(content) > MAX_BASE64_CHARS:
                raise self.error("InvalidParameterValue.InvalidFileContentSize", "FileContent exceeds 10 MB.")
            data = self._decode(content)
            md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - Tencent's FileMD5, not security
            suggestion, label, sub_label, score = self._colour_verdict(data)
        else:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise self.error("InvalidParameterValue.InvalidFileUrl", "FileUrl is not a URL.")
            suggestion, label, sub_label, score = self._url_verdict(url)
        self.calls["ImageModeration"] += 1
        self.requests.append(("ImageModeration", dict(params)))
        scene = {
            "Scene": label if label != "Normal" else "Porn",
            "Suggestion": suggestion,
            "Label": label,
            "SubLabel": sub_label,
            "Score": score,
            "Details": [],
        }
        return {
            "Suggestion": suggestion,
            "Label": label,
            "SubLabel": sub_label,
            "Score": score,
            "LabelResults": [scene],
            "ObjectResults": [],
            "OcrResults": [],
            "LibResults": [],
            "DataId": params.get("DataId") or "",
            "BizType": params.get("BizType") or "0",
            "Extra": "",
            "FileMD5": md5,
            "RecognitionResults": [],
        }

    # -- internals -----------------------------------------------------------------------------

    def _common(self, params: dict[str, Any]) -> None:
        biz_type = params.get("BizType")
        if biz_type is not None and biz_type not in self.biz_types:
            raise self.error("InvalidParameterValue.InvalidBizType", "BizType is not configured.")
        data_id = params.get("DataId")
        if data_id is not None and (not isinstance(data_id, str) or not _DATA_ID.fullmatch(data_id)):
            raise self.error("InvalidParameterValue.InvalidDataId", "DataId is invalid.")
        user = params.get("User")
        if user is not None and not isinstance(user, dict):
            raise self.error("InvalidParameter.ParameterError", "User must be an object.")

    def _decode(self, content: str) -> bytes:
        try:
            data = base64.b64decode(content, validate=True)
        except binascii.Error:
            raise self.error("InvalidParameterValue.InvalidImageContent", "FileContent is not base64.") from None
        if not data:
            raise self.error("InvalidParameterValue.EmptyImageContent", "FileContent is empty.")
        return data

    def _colour_verdict(self, data: bytes) -> tuple[str, str, str, int]:
        try:
            with Image.open(io.BytesIO(data)) as image:
                mean = ImageStat.Stat(image.convert("RGB")).mean
        except Exception:
            raise self.error("InvalidParameterValue.InvalidImageContent", "The image cannot be decoded.") from None

        def near(colour: tuple[int, int, int]) -> bool:
            return all(abs(m - c) <= COLOUR_TOLERANCE for m, c in zip(mean, colour, strict=True))

        if near(BLOCK_COLOUR):
            return "Block", "Porn", "SexyBehavior", 97
        if near(REVIEW_COLOUR):
            return "Review", "Sexy", "Underwear", 71
        return "Pass", "Normal", "", 0

    @staticmethod
    def _url_verdict(url: str) -> tuple[str, str, str, int]:
        if "ims-block" in url:
            return "Block", "Porn", "SexyBehavior", 97
        if "ims-review" in url:
            return "Review", "Sexy", "Underwear", 71
        return "Pass", "Normal", "", 0
