"""Real image operations for the local CPU provider: classic OpenCV/Pillow algorithms, no AI models.

Every function is pure and synchronous (the provider runs it in a worker thread), takes encoded
image bytes (PNG, JPEG or WebP) and returns an ``OpResult``. Inputs are decoded with Pillow, EXIF
orientation is applied to the pixels (and the EXIF block is not copied to the output, so GPS tags
never leak); the ICC profile, if any, is carried over. Work is bounded by a pixel budget checked
from the header *before* any pixel is decoded, so a decompression bomb costs nothing.

These are deterministic textbook algorithms (GrabCut, Telea/Navier-Stokes inpainting, Haar cascades,
Poisson blending). They are quick fallbacks, not substitutes for the generative models the remote
providers call; each docstring says where they break down.
"""

from __future__ import annotations

import io
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Final, Literal

import cv2
import cv2.data
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

U8 = NDArray[np.uint8]
F32 = NDArray[np.float32]
Box = tuple[int, int, int, int]  # x, y, width, height

DEFAULT_MAX_PIXELS: Final = 40_000_000
# Only these decoders are ever tried: Pillow's rarer plugins are a needless attack surface here.
_FORMATS: Final = ("PNG", "JPEG", "WEBP")
_ALPHA_MODES: Final = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# GrabCut's cost grows with pixels × iterations; segmenting a reduced copy keeps cutout near 1 s.
_GRABCUT_SIDE: Final = 512
_GRABCUT_ITERS: Final = 5
_MAX_MASK_RATIO: Final = 0.6
# Haar cascades are trained on 24 px windows; above ~1000 px detection only gets slower, not better.
_DETECT_SIDE: Final = 1024


class LocalOpError(Exception):
    """An operation refused or failed. ``code`` is stable and safe to store; ``message`` is for humans.

    Codes: ``bad_input`` (undecodable or unusable image), ``bad_params`` (argument out of range),
    ``image_too_large`` (over the pixel budget), ``bad_mask``, ``no_face_found``,
    ``no_foreground_found``, ``processing_failed`` (OpenCV itself raised).
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class OpResult:
    data: bytes
    content_type: str
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class _Decoded:
    bgr: U8  # H×W×3, OpenCV channel order
    alpha: U8 | None  # H×W, None when the image is fully opaque
    icc: bytes | None
    source_size: tuple[int, int]  # oriented width, height before any draft reduction


def _int_param(name: str, value: object, lo: int, hi: int) -> int:
    # bool is an int subclass; True as a margin is certainly a caller bug.
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise LocalOpError("bad_params", f"{name} must be an integer in [{lo}, {hi}]")
    return value


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only and enforce the pixel budget before anything is decompressed."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) == 0:
        raise LocalOpError("bad_input", "empty or non-bytes image")
    try:
        img = Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombError as exc:
        raise LocalOpError("image_too_large", "image exceeds the decoder's safety limit") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise LocalOpError("bad_input", "not a readable PNG, JPEG or WebP image") from exc
    width, height = img.size
    if width * height > max_pixels:
        raise LocalOpError("image_too_large", f"{width}x{height} exceeds {max_pixels} pixels")
    return img


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a malformed EXIF block must not make the image unreadable
        orientation = 1
    w, h = img.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _decode(data: bytes, max_pixels: int, *, draft_side: int | None = None) -> _Decoded:
    img = _open(data, max_pixels)
    icc = img.info.get("icc_profile")
    source_size = _oriented_size(img)
    try:
        if draft_side is not None and img.format == "JPEG":
            # JPEG can decode at 1/2..1/8 scale directly, a large saving for thumbnails.
            img.draft(None, (draft_side, draft_side))
        img = ImageOps.exif_transpose(img)
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # Pillow's convert() clips 16-bit grey to 255 instead of rescaling; do it by hand.
            img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
        has_alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
        arr = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    except MemoryError:
        raise
    except Exception as exc:  # Pillow plugins raise many exception types on corrupt data
        raise LocalOpError("bad_input", "image data is corrupt or truncated") from exc
    # An all-opaque alpha channel is dropped so "has transparency" means what it says downstream.
    alpha = np.ascontiguousarray(arr[:, :, 3]) if has_alpha and int(arr[:, :, 3].min()) < 255 else None
    bgr = np.ascontiguousarray(arr[:, :, 2::-1])
    return _Decoded(bgr=bgr, alpha=alpha, icc=icc if isinstance(icc, bytes) else None, source_size=source_size)


def _encode(bgr: U8, alpha: U8 | None, fmt: Literal["PNG", "JPEG"], icc: bytes | None, quality: int = 92) -> bytes:
    rgb = bgr[:, :, ::-1]
    arr = np.dstack([rgb, alpha]) if alpha is not None else np.ascontiguousarray(rgb)
    img = Image.fromarray(arr)
    buf = io.BytesIO()
    extra: dict[str, object] = {"icc_profile": icc} if icc else {}
    img.save(buf, fmt, **extra, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _fit(arr: U8, max_side: int) -> U8:
    h, w = arr.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return arr
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(arr, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _flatten(dec: _Decoded) -> U8:
    """Composite onto white: transparent pixels often hold black garbage that would fool detectors."""
    if dec.alpha is None:
        return dec.bgr
    a = dec.alpha.astype(np.float32)[:, :, None] / 255.0
    return np.asarray(dec.bgr * a + 255.0 * (1.0 - a) + 0.5, dtype=np.uint8)


def _ellipse_kernel(radius: int) -> U8:
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)), dtype=np.uint8)


def image_info(image: bytes) -> dict[str, object]:
    """Format, oriented width/height, Pillow mode, alpha and frame count, read from the header only.

    Does not decode or verify the pixel data, so a truncated file can still report a size here.
    Raises ``bad_input`` for unreadable headers and ``image_too_large`` beyond Pillow's bomb limit.
    """
    img = _open(image, sys.maxsize)
    width, height = _oriented_size(img)
    has_alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
    info: dict[str, object] = {"format": img.format, "width": width, "height": height, "mode": img.mode}
    return info | {"has_alpha": has_alpha, "frames": int(getattr(img, "n_frames", 1))}


def thumbnail(image: bytes, *, max_side: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> OpResult:
    """Downscale (never upscale) so the longer side is at most ``max_side``, with area averaging.

    Output is JPEG (quality 85) for opaque images and PNG when there is transparency. Only the
    first frame of an animated WebP is used.
    """
    _int_param("max_side", max_side, 8, 16384)
    dec = _decode(image, max_pixels, draft_side=max_side)
    bgr = _fit(dec.bgr, max_side)
    alpha = None if dec.alpha is None else _fit(dec.alpha, max_side)
    fmt: Literal["PNG", "JPEG"] = "JPEG" if alpha is None else "PNG"
    data = _encode(bgr, alpha, fmt, dec.icc, quality=85)
    h, w = bgr.shape[:2]
    sw, sh = dec.source_size
    meta: dict[str, object] = {"width": w, "height": h, "source_width": sw, "source_height": sh}
    return OpResult(data, "image/jpeg" if fmt == "JPEG" else "image/png", meta)


def _largest_component(mask: U8) -> U8:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.where(labels == biggest, 255, 0).astype(np.uint8)


def cutout(image: bytes, *, max_side: int = 2048, max_pixels: int = DEFAULT_MAX_PIXELS) -> OpResult:
    """Separate a centred subject from its background and return an RGBA PNG.

    Algorithm: GrabCut (colour Gaussian mixtures + graph cut) on a copy reduced to 512 px, seeded
    with a rectangle inset 5 % from each border; a second pass then lets the subject reach the
    border if its colours say so. The mask is cleaned (morphological open/close), reduced to its
    largest connected component, upscaled, and feathered by about a pixel. The output is the input
    downscaled to at most ``max_side`` with that alpha (multiplied into any existing alpha).

    Limits: it only knows colour, not what a "subject" is. It assumes one roughly centred subject
    whose colours differ from the background; similar colours bleed, hair and fur become a smooth
    edge (the mask is computed at 512 px), and of several objects only the largest is kept.
    Metadata: width, height, foreground_ratio (share of pixels with alpha ≥ 128).
    """
    _int_param("max_side", max_side, 16, 16384)
    dec = _decode(image, max_pixels)
    bgr = _fit(_flatten(dec), max_side)
    h, w = bgr.shape[:2]
    if min(h, w) < 16:
        raise LocalOpError("bad_input", "image is too small to segment (under 16 px)")
    small = _fit(bgr, _GRABCUT_SIDE)
    sh, sw = small.shape[:2]
    mx, my = max(1, round(sw * 0.05)), max(1, round(sh * 0.05))
    gc_mask = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(small, gc_mask, (mx, my, sw - 2 * mx, sh - 2 * my), bgd, fgd, _GRABCUT_ITERS, cv2.GC_INIT_WITH_RECT)
        # The second pass re-fits colour models to both classes; it needs real foreground samples.
        if np.count_nonzero(gc_mask == cv2.GC_PR_FGD) < 64:
            raise LocalOpError("no_foreground_found", "no foreground separated from the background")
        # The rectangle forces its outside to definite background, which would crop a subject that
        # touches the frame (a portrait cut at the chest). Demote it to "probably background" and
        # let the learned colour models decide; the component filter below removes stray pickups.
        gc_mask[gc_mask == cv2.GC_BGD] = cv2.GC_PR_BGD
        cv2.grabCut(small, gc_mask, (0, 0, 0, 0), bgd, fgd, 2, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        raise LocalOpError("processing_failed", "GrabCut failed on this image") from exc
    fg = np.where((gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    kernel = _ellipse_kernel(max(1, round(min(sh, sw) / 200)))
    fg = np.asarray(cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel), dtype=np.uint8)  # specks
    fg = np.asarray(cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel), dtype=np.uint8)  # pinholes
    fg = _largest_component(fg)
    if not fg.any():
        raise LocalOpError("no_foreground_found", "no foreground separated from the background")
    # Linear upscaling + re-threshold gives smooth diagonal edges instead of 4× staircase blocks;
    # the blur then feathers by at least half the upscale factor so no block shows through.
    up = max(w / sw, h / sh)
    fg = np.asarray(cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    fg = np.where(fg >= 128, 255, 0).astype(np.uint8)
    alpha = np.asarray(cv2.GaussianBlur(fg, (0, 0), max(0.8, up / 2)), dtype=np.uint8)
    if dec.alpha is not None:
        src_alpha = _fit(dec.alpha, max_side)
        alpha = ((alpha.astype(np.uint16) * src_alpha + 127) // 255).astype(np.uint8)
    meta: dict[str, object] = {"width": w, "height": h, "foreground_ratio": round(float((alpha >= 128).mean()), 4)}
    return OpResult(_encode(bgr, alpha, "PNG", dec.icc), "image/png", meta)


def _decode_mask(mask: bytes, width: int, height: int, max_pixels: int) -> NDArray[np.bool_]:
    try:
        dec = _decode(mask, max_pixels)
    except LocalOpError as exc:  # say *which* input is unusable
        raise LocalOpError("bad_mask" if exc.code == "bad_input" else exc.code, exc.message) from exc
    # A canvas-painted mask (strokes on transparency): the strokes' opacity is the mask, whatever
    # their colour. Otherwise the brightest channel, so red or green strokes count as well as white.
    lum = np.where(dec.alpha > 0, 255, 0).astype(np.uint8) if dec.alpha is not None else dec.bgr.max(axis=2)
    if int(lum.max()) == 1:
        lum = lum * np.uint8(255)  # 0/1 label masks, as segmentation tools often save them
    mh, mw = lum.shape
    if abs((mw / mh) / (width / height) - 1) > 0.02:
        raise LocalOpError("bad_mask", f"mask {mw}x{mh} does not match the image's aspect ratio")
    if (mw, mh) != (width, height):
        lum = np.asarray(cv2.resize(lum, (width, height), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    return np.asarray(lum >= 128, dtype=np.bool_)


def erase(
    image: bytes,
    mask: bytes,
    *,
    radius: int = 5,
    method: Literal["telea", "ns"] = "telea",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> OpResult:
    """Remove what the mask covers by diffusing the surrounding colours into it (``cv2.inpaint``).

    The mask (PNG/JPEG/WebP) is scaled to the image if its aspect ratio matches (within 2 %). A pixel
    is erased where the mask's brightest channel is ≥ 128 (or 1 in a 0/1 label mask); a mask with
    transparency is read from its alpha instead (any opacity erases). The mask is dilated by
    ~0.2 % of the long side (min 2 px) so the object's anti-aliased halo goes too. ``radius`` is the
    inpainting neighbourhood; ``method`` picks Telea's fast marching or the Navier-Stokes variant.

    Limits: there is no texture synthesis. Small blemishes, wires and thin scribbles vanish well;
    large areas become a smooth colour smear. Refuses an empty mask or one covering > 60 % of the
    image (``bad_mask``). Output is always PNG, so pixels outside the dilated mask are returned
    bit-exact (at the price of larger files for JPEG inputs). Alpha, if present, is inpainted too.
    Metadata: width, height, masked_ratio, dilate_px, method, radius.
    """
    flags = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
    if method not in flags:
        raise LocalOpError("bad_params", "method must be 'telea' or 'ns'")
    _int_param("radius", radius, 1, 50)
    dec = _decode(image, max_pixels)
    h, w = dec.bgr.shape[:2]
    wanted = _decode_mask(mask, w, h, max_pixels)
    ratio = float(wanted.mean())
    if ratio == 0:
        raise LocalOpError("bad_mask", "mask is empty")
    if ratio > _MAX_MASK_RATIO:
        raise LocalOpError("bad_mask", f"mask covers {ratio:.0%} of the image (limit 60%)")
    dilate = max(2, round(max(h, w) / 500))
    m8 = np.asarray(cv2.dilate(wanted.astype(np.uint8) * 255, _ellipse_kernel(dilate)), dtype=np.uint8)
    # Inpainting reads only `radius` pixels around the hole, so solving on the hole's bounding box
    # plus that margin gives the same result as the full frame at a fraction of the cost.
    ys, xs = np.nonzero(m8)
    pad = radius + 2
    y0, y1 = max(0, int(ys.min()) - pad), min(h, int(ys.max()) + pad + 1)
    x0, x1 = max(0, int(xs.min()) - pad), min(w, int(xs.max()) + pad + 1)
    roi_mask = np.ascontiguousarray(m8[y0:y1, x0:x1])
    out = dec.bgr.copy()
    alpha = None if dec.alpha is None else dec.alpha.copy()
    try:
        out[y0:y1, x0:x1] = cv2.inpaint(np.ascontiguousarray(out[y0:y1, x0:x1]), roi_mask, radius, flags[method])
        if alpha is not None:
            roi = np.ascontiguousarray(alpha[y0:y1, x0:x1])
            alpha[y0:y1, x0:x1] = cv2.inpaint(roi, roi_mask, radius, flags[method])
    except cv2.error as exc:
        raise LocalOpError("processing_failed", "inpainting failed") from exc
    meta: dict[str, object] = {"width": w, "height": h, "masked_ratio": round(ratio, 4), "dilate_px": dilate}
    meta |= {"method": method, "radius": radius}
    return OpResult(_encode(out, alpha, "PNG", dec.icc), "image/png", meta)


def _blur_level(canvas: U8, level: int) -> U8:
    """``canvas`` blurred by a Gaussian of σ ≈ 0.6·2**level px, via a pyramid (cost ∝ pixels, not σ)."""
    small = canvas
    for _ in range(level):
        small = np.asarray(cv2.pyrDown(small), dtype=np.uint8)
    h, w = canvas.shape[:2]
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8).reshape(canvas.shape)


def outpaint(
    image: bytes,
    *,
    left: int,
    top: int,
    right: int,
    bottom: int,
    max_side: int = 4096,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> OpResult:
    """Extend the canvas by pixel margins and fill the new area with a plausible continuation.

    Algorithm: mirror-pad the image (texture continues across the seam), fading within a short band
    (1/8 of the shorter side) into the replicated edge colour, then blur the padding more the further
    it is from the original, σ ≈ 0.5 × distance, so detail fades into soft colour fields that
    continue the border's colours. The original pixels are copied back unchanged. Margins
    are in input pixels, each 0..2× the matching side, at least one > 0. If the new canvas's long
    side would exceed ``max_side``, image and margins are scaled down together (``scale`` < 1 in
    metadata). Alpha, if present, is extended the same way.

    Limits: it invents nothing — no new objects, no perspective, no texture; wide margins look like
    soft streaks of the border colours (a blurred "edge stretch"), and on textured photos (grass,
    sand, noise) the smooth fill shows as a visible frame around the original.
    Metadata: width, height, left/top/right/bottom (as applied), scale, original_width/height.
    """
    _int_param("max_side", max_side, 16, 16384)
    for name, value in (("left", left), ("top", top), ("right", right), ("bottom", bottom)):
        _int_param(name, value, 0, 2 * 16384)
    if left == top == right == bottom == 0:
        raise LocalOpError("bad_params", "at least one margin must be > 0")
    dec = _decode(image, max_pixels)
    h, w = dec.bgr.shape[:2]
    if max(left, right) > 2 * w or max(top, bottom) > 2 * h:
        raise LocalOpError("bad_params", "each margin may be at most twice the matching side")
    scale = min(1.0, max_side / max(w + left + right, h + top + bottom))
    src = dec.bgr if dec.alpha is None else np.dstack([dec.bgr, dec.alpha])
    if scale < 1:
        left, top, right, bottom = (round(m * scale) for m in (left, top, right, bottom))
        src = _fit(src, max(1, round(max(w, h) * scale)))
        h, w = src.shape[:2]
    out_w, out_h = w + left + right, h + top + bottom
    if out_w * out_h > max_pixels:
        raise LocalOpError("image_too_large", f"{out_w}x{out_h} output exceeds {max_pixels} pixels")

    def pad(border: int) -> U8:
        padded = cv2.copyMakeBorder(src, top, bottom, left, right, border)
        return np.asarray(padded, dtype=np.uint8).reshape(out_h, out_w, src.shape[2])

    outside = np.ones((out_h, out_w), np.uint8)
    outside[top : top + h, left : left + w] = 0
    dist = np.asarray(cv2.distanceTransform(outside, cv2.DIST_L2, 5), dtype=np.float32)
    # A mirror continues texture across the seam, but at depth d it shows content from d pixels
    # inside the image (the far side of the subject, for a wide margin). So fade from the mirror to
    # the replicated border colour over a short band, then let the blur smooth the streaks.
    band = max(4.0, min(w, h) / 8)
    fade = np.clip(dist / band, 0.0, 1.0)[:, :, None]
    mirror = pad(cv2.BORDER_REFLECT_101).astype(np.float32)
    canvas = np.asarray(mirror + fade * (pad(cv2.BORDER_REPLICATE) - mirror) + 0.5, dtype=np.uint8)
    target_sigma = 0.5 * dist
    # Piecewise-linear interpolation between pyramid levels, done as successive lerps so that only
    # one blurred level is alive at a time (memory stays ~2 canvases whatever the margin).
    acc: F32 = canvas.astype(np.float32)
    prev_sigma, level = 0.0, 0
    while prev_sigma < float(target_sigma.max()) and level < 16:
        level += 1
        sigma = 0.6 * 2.0**level
        weight = np.clip((target_sigma - prev_sigma) / (sigma - prev_sigma), 0.0, 1.0)[:, :, None]
        acc += weight * (_blur_level(canvas, level).astype(np.float32) - acc)
        prev_sigma = sigma
    out = np.asarray(np.clip(acc + 0.5, 0, 255), dtype=np.uint8)
    out[top : top + h, left : left + w] = src
    bgr = np.ascontiguousarray(out[:, :, :3])
    alpha = np.ascontiguousarray(out[:, :, 3]) if out.shape[2] == 4 else None
    meta: dict[str, object] = {"width": out_w, "height": out_h, "left": left, "top": top, "right": right}
    meta |= {"bottom": bottom, "scale": round(scale, 6), "original_width": w, "original_height": h}
    return OpResult(_encode(bgr, alpha, "PNG", dec.icc), "image/png", meta)


# One lock both loads each cascade lazily (once per process) and serialises detection:
# CascadeClassifier.detectMultiScale keeps scratch state in the object (it is non-const in C++,
# opencv/opencv#4287), so concurrent calls on a shared instance are unsafe. Detection runs on a
# ≤ 1024 px copy (tens of ms), so the serialisation costs little next to the blending.
_cascade_lock = threading.Lock()
_cascades: dict[str, cv2.CascadeClassifier] = {}


def _detect(gray: U8, name: str, min_side: int, max_side: int = 0) -> list[Box]:
    with _cascade_lock:
        cascade = _cascades.get(name)
        if cascade is None:
            cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))
            if cascade.empty():
                raise LocalOpError("processing_failed", f"cascade {name} is missing from OpenCV")
            _cascades[name] = cascade
        found = cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side), maxSize=(max_side, max_side)
        )
    return [(int(x), int(y), int(bw), int(bh)) for x, y, bw, bh in found]


def _face_and_eyes(bgr: U8, which: str) -> tuple[Box, tuple[tuple[float, float], tuple[float, float]] | None]:
    """Largest frontal face box (full-resolution coordinates) and, if both are found, eye centres."""
    gray_full = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    gray = np.asarray(cv2.equalizeHist(_fit(gray_full, _DETECT_SIDE)), dtype=np.uint8)
    back = bgr.shape[1] / gray.shape[1]
    faces = _detect(gray, "haarcascade_frontalface_default.xml", 30)
    if not faces:
        raise LocalOpError("no_face_found", f"no frontal face found in the {which} image")
    fx, fy, fw, fh = max(faces, key=lambda b: b[2] * b[3])
    box = (round(fx * back), round(fy * back), round(fw * back), round(fh * back))
    # Eyes sit in the upper ~60 % of a Haar face box; searching only there avoids nostrils/mouth.
    upper = np.ascontiguousarray(gray[fy : fy + int(fh * 0.6), fx : fx + fw])
    eyes = _detect(upper, "haarcascade_eye.xml", max(8, fw // 10), max(9, fw // 2))
    sides = [[e for e in eyes if (e[0] + e[2] / 2 < fw / 2) == is_left] for is_left in (True, False)]
    if not all(sides):
        return box, None
    centres = [max(side, key=lambda e: e[2] * e[3]) for side in sides]
    left, right = ((back * (fx + x + ew / 2), back * (fy + y + eh / 2)) for x, y, ew, eh in centres)
    return box, (left, right)


def _similarity(src: tuple[tuple[float, float], ...], dst: tuple[tuple[float, float], ...]) -> NDArray[np.float64]:
    """The rotation+scale+translation that maps the two ``src`` points exactly onto the ``dst`` points."""
    (s1x, s1y), (s2x, s2y) = src
    (d1x, d1y), (d2x, d2y) = dst
    zs, zd = complex(s2x - s1x, s2y - s1y), complex(d2x - d1x, d2y - d1y)
    r = zd / zs  # complex ratio = scale·e^{iθ}
    a, b = r.real, r.imag
    return np.array([[a, -b, d1x - (a * s1x - b * s1y)], [b, a, d1y - (b * s1x + a * s1y)]], dtype=np.float64)


def face_swap(source: bytes, target: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> OpResult:
    """Paste the largest face of ``source`` over the largest face of ``target``; JPEG at target size.

    Algorithm: Haar-cascade frontal face detection (on a ≤ 1024 px copy) picks the largest face in
    each image. If both eyes are found in both faces (Haar eye cascade) and agree with the boxes
    (scale within ±40 %, tilt < 25°), the source is warped by the similarity that maps eye onto eye;
    otherwise the source face box is simply scaled onto the target box. The warped face is colour-
    matched to the target face (per-channel mean/std in LAB) and Poisson-blended
    (``cv2.seamlessClone``) inside an ellipse inscribed in the target face box.

    Limits: Haar cascades find upright, roughly frontal, well-lit faces only, and have false
    positives on face-like textures. There are no landmarks, so pose, expression and face shape are
    not adapted: turned or tilted heads look pasted. Poisson blending also pulls the pasted skin
    toward the target's lighting, which can wash out contrast. Pixels outside the ellipse's
    bounding box are untouched apart from JPEG re-encoding. Raises ``no_face_found``.
    Metadata: source_face_box, target_face_box ([x, y, w, h]), aligned_by_eyes.
    """
    src, dst = _flatten(_decode(source, max_pixels)), _decode(target, max_pixels)
    dst_bgr = _flatten(dst)
    sbox, seyes = _face_and_eyes(src, "source")
    tbox, teyes = _face_and_eyes(dst_bgr, "target")
    th, tw = dst_bgr.shape[:2]
    box_scale = tbox[2] / sbox[2]
    matrix = np.array(
        [[box_scale, 0, tbox[0] - sbox[0] * box_scale], [0, tbox[3] / sbox[3], tbox[1] - sbox[1] * tbox[3] / sbox[3]]]
    )
    aligned = False
    if seyes is not None and teyes is not None:
        candidate = _similarity(seyes, teyes)
        eye_scale = math.hypot(candidate[0, 0], candidate[1, 0])
        tilt = abs(math.degrees(math.atan2(candidate[1, 0], candidate[0, 0])))
        if 0.6 < eye_scale / box_scale < 1.4 and tilt < 25:
            matrix, aligned = candidate, True
    mask = np.zeros((th, tw), np.uint8)
    x, y, bw, bh = tbox
    cv2.ellipse(mask, (x + bw // 2, y + bh // 2), (max(1, int(bw * 0.42)), max(1, int(bh * 0.5))), 0, 0, 360, 255, -1)
    # seamlessClone zeroes the outer 1 px ring of its mask; keep the ellipse (and the 2 px margin
    # added around it below) clear of every border so nothing is clipped or misplaced.
    mask[:4, :], mask[-4:, :], mask[:, :4], mask[:, -4:] = 0, 0, 0, 0
    rx, ry, rw, rh = cv2.boundingRect(mask)
    if rw < 8 or rh < 8:
        raise LocalOpError("no_face_found", "target face is too close to the image border")
    rx, ry, rw, rh = rx - 2, ry - 2, rw + 4, rh + 4
    # Warp only the region that will be blended: cost scales with the face, not the photo.
    shift = matrix.copy()
    shift[:, 2] -= (rx, ry)
    warped = np.asarray(
        cv2.warpAffine(src, shift, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), dtype=np.uint8
    )
    roi_mask = np.ascontiguousarray(mask[ry : ry + rh, rx : rx + rw])
    inside = roi_mask > 0
    lab_src = np.asarray(cv2.cvtColor(warped, cv2.COLOR_BGR2LAB), dtype=np.float32)
    lab_dst = np.asarray(cv2.cvtColor(dst_bgr[ry : ry + rh, rx : rx + rw], cv2.COLOR_BGR2LAB), dtype=np.float32)
    for c in range(3):
        s_vals, d_vals = lab_src[:, :, c][inside], lab_dst[:, :, c][inside]
        # Clamp the contrast ratio: a flat region (std≈0) would otherwise blow up the noise.
        gain = float(np.clip((d_vals.std() + 1e-3) / (s_vals.std() + 1e-3), 0.5, 2.0))
        lab_src[:, :, c] = (lab_src[:, :, c] - s_vals.mean()) * gain + d_vals.mean()
    warped = np.asarray(
        cv2.cvtColor(np.clip(lab_src + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR), dtype=np.uint8
    )
    # seamlessClone centres the mask's bounding rect on `center` using integer halving; mirror it.
    bx, by, bbw, bbh = cv2.boundingRect(roi_mask)
    center = (rx + bx + bbw // 2, ry + by + bbh // 2)
    try:
        out = np.asarray(cv2.seamlessClone(warped, dst_bgr, roi_mask, center, cv2.NORMAL_CLONE), dtype=np.uint8)
    except cv2.error as exc:
        raise LocalOpError("processing_failed", "seamless cloning failed") from exc
    meta: dict[str, object] = {"source_face_box": list(sbox), "target_face_box": list(tbox), "aligned_by_eyes": aligned}
    return OpResult(_encode(out, None, "JPEG", dst.icc), "image/jpeg", meta)
