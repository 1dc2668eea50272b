"""Verification of uploaded images (E2): real type, dimensions, pixel cap, integrity.

The type is sniffed by Pillow from the bytes, with only the PNG, JPEG and WebP parsers enabled, and
must equal the declared content type. Dimensions come from the header, so an image over the pixel
cap is refused before a single pixel is decoded — that, not Pillow's global limit, is the
decompression-bomb defence here. We deliberately touch neither ``Image.MAX_IMAGE_PIXELS`` nor the
``warnings`` filters: both are process-wide, and this code runs in worker threads next to other
image code, where ``warnings.catch_warnings`` (not thread-safe before Python 3.14) can leave an
"error" filter installed for everyone, or drop ours. Pillow's own bomb check still runs inside
``Image.open`` with its default limit (~89 MP warns, ~179 MP raises); its error, and its warning if
someone escalated it, both count as "too many pixels".
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# The parsers Pillow may use on untrusted bytes; nothing else is even tried.
_FORMATS = ("PNG", "JPEG", "WEBP")
# Phone cameras write multi-picture JPEGs, which Pillow's JPEG parser reports as "MPO".
CONTENT_TYPE_BY_FORMAT: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "WEBP": "image/webp",
}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    content_type: str
    width: int
    height: int


class ImageRejected(Exception):
    """Why an upload is not an acceptable image. ``reason`` is a stable code for clients:

    - ``unsupported_format``: not a PNG, JPEG or WebP image (or not an image at all)
    - ``type_mismatch``: an image, but not of the declared content type
    - ``too_many_pixels``: width × height above the cap (a decompression bomb, or just too big)
    - ``corrupt``: the header parses but the data is truncated or damaged
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def inspect_image(data: bytes, declared_content_type: str, max_pixels: int) -> ImageInfo:
    """Check ``data`` completely (blocking: decodes the image). Raises ``ImageRejected``."""
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
            # Header only so far: nothing has been decompressed.
            sniffed = CONTENT_TYPE_BY_FORMAT.get(img.format or "")
            width, height = img.size
            if sniffed is None:
                raise ImageRejected("unsupported_format", "not a PNG, JPEG or WebP image")
            if sniffed != declared_content_type:
                raise ImageRejected("type_mismatch", f"the content is {sniffed}, not {declared_content_type}")
            _check_pixels(width, height, max_pixels)
            # verify() checks structure (PNG chunk CRCs) without decoding; it leaves the image
            # unusable, hence a second open to decode it fully, which is what catches truncation.
            img.verify()
        with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
            img.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("too_many_pixels", f"the image has more than {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise ImageRejected("unsupported_format", "not a PNG, JPEG or WebP image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError):
        # What Pillow's decoders raise for truncated or malformed data ("image file is truncated",
        # broken chunks, bad Huffman tables …).
        raise ImageRejected("corrupt", "the image data is truncated or damaged") from None
    return ImageInfo(content_type=sniffed, width=width, height=height)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejected("corrupt", "the image has no pixels")
    if width * height > max_pixels:
        raise ImageRejected("too_many_pixels", f"the image has more than {max_pixels} pixels")


async def verify_image(data: bytes, declared_content_type: str, max_pixels: int) -> ImageInfo:
    """``inspect_image`` off the event loop (decoding 40 MP takes a while; Pillow drops the GIL)."""
    return await asyncio.to_thread(inspect_image, data, declared_content_type, max_pixels)
