"""Images built in code for the storage tests: real ones, broken ones and bombs."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def noise(width: int = 48, height: int = 32, fmt: str = "PNG", seed: int = 7) -> bytes:
    """A real image of random pixels (incompressible, so truncating it loses pixel data)."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    img = Image.frombytes("RGB", (width, height), pixels)
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _ihdr(width: int, height: int) -> bytes:
    # 1-bit greyscale, no interlace: the smallest pixels PNG has.
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))


def png_bomb(width: int, height: int) -> bytes:
    """A valid, complete PNG of ``width`` × ``height`` black pixels that compresses ~1000:1: a few
    kilobytes on the wire, gigabytes once decoded to RGBA."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter type 0, then the packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return PNG_SIGNATURE + _ihdr(width, height) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` × ``height`` but whose data is a few bytes."""
    idat = zlib.compress(bytes(64))
    return PNG_SIGNATURE + _ihdr(width, height) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[: int(len(data) * keep)]


# What a polyglot carries after its image: a page that runs script if a browser renders it.
PAGE = b"<!doctype html><html><body><script>alert(document.domain)</script></body></html>\n"


def _save(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def noise_image(width: int, height: int, mode: str = "RGB", seed: int = 7) -> Image.Image:
    """Random pixels of ``mode`` (L, I;16, RGB, RGBA): raw bytes sized by the mode's own packing."""
    per_pixel = {"L": 1, "I;16": 2, "RGB": 3, "RGBA": 4}[mode]
    return Image.frombytes(mode, (width, height), random.Random(seed).randbytes(width * height * per_pixel))


def progressive_jpeg(width: int = 48, height: int = 32) -> bytes:
    return _save(noise_image(width, height), "JPEG", progressive=True, quality=90)


def jpeg_hiding_an_end_marker(width: int = 48, height: int = 32) -> bytes:
    """A JPEG whose first segments hold the bytes of an EOI marker: an APP1 "Exif" block carrying a
    whole small JPEG (as EXIF thumbnails are), and a comment. Only a walk over segment lengths
    finds the real end; searching for the first FF D9 would cut the image in two."""
    jpeg = noise(width, height, "JPEG")
    thumbnail = noise(8, 8, "JPEG", seed=3)
    app1 = b"Exif\x00\x00" + thumbnail
    comment = b"not the end: \xff\xd9 <html>"
    segments = b"".join(
        marker + struct.pack(">H", len(body) + 2) + body
        for marker, body in ((b"\xff\xe1", app1), (b"\xff\xfe", comment))
    )
    return jpeg[:2] + segments + jpeg[2:]


def multi_picture_jpeg(width: int = 48, height: int = 32) -> bytes:
    """An MPO, as phone cameras write: the photo, then a second picture after its EOI."""
    first, second = noise_image(width, height), noise_image(width // 2, height // 2, seed=9)
    return _save(first, "MPO", save_all=True, append_images=[second])


def animated(fmt: str, frames: int, width: int = 48, height: int = 32) -> bytes:
    """An animated PNG (APNG) or WebP of ``frames`` different frames."""
    images = [noise_image(width, height, "RGBA", seed=i) for i in range(frames)]
    return _save(
        images[0], fmt, save_all=True, append_images=images[1:], **({"lossless": True} if fmt == "WEBP" else {})
    )


def grey_png(width: int, height: int, bits: int) -> bytes:
    """A greyscale PNG of 8 or 16 bits per pixel (Pillow decodes them to modes L and I;16)."""
    mode = "L" if bits == 8 else "I;16"
    return _save(noise_image(width, height, mode), "PNG")


def png_claiming_rgb(width: int, height: int) -> bytes:
    """Like ``png_claiming``, in 8-bit RGB: a few bytes whose header asks for width × height × 4
    bytes of memory once decoded."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return PNG_SIGNATURE + ihdr + _chunk(b"IDAT", zlib.compress(bytes(64))) + _chunk(b"IEND", b"")
