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
