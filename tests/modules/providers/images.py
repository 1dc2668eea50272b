"""Test images drawn in code, so the suite has no binary fixtures and every expectation is derivable.

Arrays here are RGB (Pillow order); the module under test works in BGR internally, which only
matters if a test compares channels directly — they all decode outputs with Pillow, so RGB throughout.
"""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

RGB = NDArray[np.uint8]

SUBJECT = (200, 40, 30)
SCRIBBLE = (220, 20, 20)


def encode(arr: RGB, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **params)
    return buf.getvalue()


def decode(data: bytes) -> RGB:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img).copy()


def gradient(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> RGB:
    """A smooth vertical gradient: inpainting and outpainting should reproduce it closely."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    col = np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t
    return np.repeat(col, width, axis=1).round().astype(np.uint8)


def subject_on_background(width: int = 320, height: int = 240, *, touch_bottom: bool = False) -> tuple[RGB, RGB]:
    """A red ellipse on a pale blue-grey gradient with mild sensor-like noise; returns (image, shape mask).

    The noise matters: GrabCut fits Gaussian mixtures, and perfectly flat colours are not what it sees
    in practice. With ``touch_bottom`` the ellipse runs off the bottom edge like a cropped portrait.
    """
    img = gradient(width, height, (190, 205, 220), (150, 165, 180))
    shape = np.zeros((height, width), np.uint8)
    cy = height * 3 // 4 if touch_bottom else height // 2
    cv2.ellipse(shape, (width // 2, cy), (width // 5, height // 3), 0, 0, 360, 255, -1)
    img[shape > 0] = SUBJECT
    rng = np.random.default_rng(7)
    noisy = img.astype(np.int16) + rng.integers(-6, 7, img.shape, dtype=np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8), shape


def scribbled(width: int = 240, height: int = 180) -> tuple[RGB, RGB, RGB]:
    """(clean background, same with a red scribble, scribble mask as 0/255 grey)."""
    clean = gradient(width, height, (60, 120, 170), (120, 170, 90))
    pts = np.array([[40, 40], [90, 120], [130, 60], [170, 130], [200, 50]], np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.polylines(mask, [pts], isClosed=False, color=255, thickness=5)
    dirty = clean.copy()
    dirty[mask > 0] = SCRIBBLE
    return clean, dirty, mask


def cartoon_face(
    width: int = 400,
    height: int = 400,
    *,
    size: int = 200,
    skin: tuple[int, int, int] = (225, 185, 150),
    background: tuple[int, int, int] = (40, 90, 60),
    mouth: tuple[int, int, int] = (160, 60, 60),
    centre: tuple[int, int] | None = None,
) -> RGB:
    """A flat cartoon face the Haar frontal-face cascade does find: it keys on a dark eye band over
    lighter cheeks and a light nose bridge, so hair, brows, dark pupils and a slight blur are enough.
    """
    img = np.full((height, width, 3), background, np.uint8)
    cx, cy = centre or (width // 2, height // 2)
    s = size
    cv2.ellipse(img, (cx, cy - int(0.15 * s)), (int(0.5 * s), int(0.6 * s)), 0, 0, 360, (40, 30, 30), -1)
    cv2.ellipse(img, (cx, cy), (int(0.42 * s), int(0.55 * s)), 0, 0, 360, skin, -1)
    for side in (-1, 1):
        ex, ey = cx + side * int(0.18 * s), cy - int(0.1 * s)
        cv2.ellipse(img, (ex, ey), (int(0.09 * s), int(0.045 * s)), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (ex, ey), int(0.04 * s), (20, 20, 30), -1)
        brow_axes = (int(0.1 * s), int(0.025 * s))
        cv2.ellipse(img, (ex, ey - int(0.09 * s)), brow_axes, 0, 180, 360, (30, 30, 40), int(0.03 * s))
    nose_end = (cx - int(0.03 * s), cy + int(0.1 * s))
    cv2.line(img, (cx, cy - int(0.05 * s)), nose_end, (190, 140, 110), max(1, int(0.015 * s)))
    cv2.ellipse(img, (cx, cy + int(0.22 * s)), (int(0.13 * s), int(0.04 * s)), 0, 0, 360, mouth, -1)
    return np.asarray(cv2.GaussianBlur(img, (0, 0), 2), dtype=np.uint8)


def halves(width: int, height: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> RGB:
    img = np.empty((height, width, 3), np.uint8)
    img[:, : width // 2] = left
    img[:, width // 2 :] = right
    return img


def with_orientation(arr: RGB, orientation: int, fmt: str = "JPEG") -> bytes:
    """Encode ``arr`` as stored pixels and tag it with an EXIF orientation, as cameras do."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(arr, fmt, exif=exif.tobytes())


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width``×``height``: only a header check can refuse it cheaply."""
    data = bytearray(encode(np.zeros((1, 1, 3), np.uint8)))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)
