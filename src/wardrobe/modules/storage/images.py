"""Verification of uploaded images: real type, dimensions, pixel cap, memory budget, integrity.

The type is sniffed by Pillow from the bytes, with only the PNG, JPEG and WebP parsers enabled, and
must equal the declared content type. Dimensions come from the header, so an image over the pixel
cap is refused before a single pixel is decoded — that, not Pillow's global limit, is the
decompression-bomb defence here. We deliberately touch neither ``Image.MAX_IMAGE_PIXELS`` nor the
``warnings`` filters: both are process-wide, and this code runs in worker threads next to other
image code, where ``warnings.catch_warnings`` (not thread-safe before Python 3.14) can leave an
"error" filter installed for everyone, or drop ours. Pillow's own bomb check still runs inside
``Image.open`` with its default limit (~89 MP warns, ~179 MP raises); its error, and its warning if
someone escalated it, both count as "too many pixels".

The pixel cap alone does not bound memory: Pillow keeps a colour pixel in 4 bytes, so an image at
the cap that compresses well (a few hundred KB) still takes 160 MB to decode, and an animation
takes that per frame. So the memory the decoded image takes is also computed from the header
(``decoded_bytes``: mode, frames) and held to a byte budget before anything is decoded.

The image must also be all there is: ``ImageInfo.length`` says where it ends (``image_end``), and
what follows (an HTML page making a polyglot, a phone's appended video) is never stored.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from PIL import Image, ImageMode, UnidentifiedImageError

from wardrobe.modules.storage.image_end import image_end

# The parsers Pillow may use on untrusted bytes; nothing else is even tried.
_FORMATS = ("PNG", "JPEG", "WEBP")
# Phone cameras write multi-picture JPEGs, which Pillow's JPEG parser reports as "MPO".
CONTENT_TYPE_BY_FORMAT: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "WEBP": "image/webp",
}


# The settings' default (WARDROBE_MAX_IMAGE_DECODE_BYTES), for callers without settings at hand.
DEFAULT_MAX_DECODE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImageInfo:
    content_type: str
    width: int
    height: int
    # How many leading bytes of the data are the image; store ``data[:length]``, never the rest.
    length: int


class ImageRejected(Exception):
    """Why an upload is not an acceptable image. ``reason`` is a stable code for clients:

    - ``unsupported_format``: not a PNG, JPEG or WebP image (or not an image at all)
    - ``type_mismatch``: an image, but not of the declared content type
    - ``too_many_pixels``: width × height above the cap (a decompression bomb, or just too big)
    - ``decoded_too_large``: decoding would take more memory than the budget (mode, frames)
    - ``corrupt``: the header parses but the data is truncated or damaged
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def inspect_image(
    data: bytes, declared_content_type: str, max_pixels: int, max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES
) -> ImageInfo:
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
            if decoded_bytes(img) > max_decode_bytes:
                raise ImageRejected(
                    "decoded_too_large", f"decoding the image would take more than {max_decode_bytes} bytes"
                )
            image_format = str(img.format)
            # verify() checks structure (PNG chunk CRCs) without decoding; it leaves the image
            # unusable, hence a second open to decode it fully, which is what catches truncation.
            img.verify()
        with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
            img.load()
        # A ValueError (NoImageEnd) when the container cannot be followed: refused as corrupt.
        length = image_end(data, image_format)
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
    return ImageInfo(content_type=sniffed, width=width, height=height, length=length)


def decoded_bytes(img: Image.Image) -> int:
    """The memory decoding ``img`` takes, from its header alone. Pillow stores a pixel of several
    bands in 4 bytes and a single-band pixel in its type's size (1 for L/P, 2 for I;16, 4 for I/F);
    each frame of an animation is a picture of that size; a progressive JPEG also holds every DCT
    coefficient (2 bytes per sample) until its last scan."""
    mode = ImageMode.getmode(img.mode)
    bands = len(mode.bands)
    per_pixel = 4 if bands > 1 else int(mode.typestr[2:])
    pixels = img.size[0] * img.size[1]
    # Only the first picture of a JPEG/MPO is kept (image_end); PNG and WebP keep every frame.
    frames = 1 if img.format in ("JPEG", "MPO") else max(1, int(getattr(img, "n_frames", 1)))
    total = pixels * per_pixel * frames
    if img.format in ("JPEG", "MPO") and img.info.get("progressive"):
        total += pixels * bands * 2
    return total


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejected("corrupt", "the image has no pixels")
    if width * height > max_pixels:
        raise ImageRejected("too_many_pixels", f"the image has more than {max_pixels} pixels")


async def verify_image(
    data: bytes, declared_content_type: str, max_pixels: int, max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES
) -> ImageInfo:
    """``inspect_image`` off the event loop (decoding 40 MP takes a while; Pillow drops the GIL)."""
    return await asyncio.to_thread(inspect_image, data, declared_content_type, max_pixels, max_decode_bytes)
