"""The local CPU provider's image operations, on images drawn in code (see ``images.py``)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import cast

import cv2
import cv2.data
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.modules.providers import images
from wardrobe.modules.providers.adapters import local_ops
from wardrobe.modules.providers.adapters.local_ops import LocalOpError, OpResult


def _code(call: Callable[[], object]) -> str:
    with pytest.raises(LocalOpError) as caught:
        call()
    return caught.value.code


# --- cutout ----------------------------------------------------------------------------------------


def test_cutout_keeps_the_subject_and_drops_the_background() -> None:
    img, shape = images.subject_on_background()
    result = local_ops.cutout(images.encode(img))
    assert result.content_type == "image/png"
    out = images.decode(result.data)
    assert out.shape == (240, 320, 4)
    alpha = out[:, :, 3]
    # Judge the interior and the background away from the edge, where feathering is expected.
    interior = cv2.erode(shape, np.ones((9, 9), np.uint8)) > 0
    background = cv2.dilate(shape, np.ones((9, 9), np.uint8)) == 0
    assert (alpha[interior] >= 200).mean() > 0.98
    assert (alpha[background] <= 30).mean() > 0.98
    for corner in (alpha[:20, :20], alpha[:20, -20:], alpha[-20:, :20], alpha[-20:, -20:]):
        assert corner.max() == 0
    assert np.array_equal(out[:, :, :3][interior], img[interior])  # colours are not altered
    assert result.metadata["foreground_ratio"] == pytest.approx((shape > 0).mean(), abs=0.03)
    assert (result.metadata["width"], result.metadata["height"]) == (320, 240)


def test_cutout_lets_a_subject_run_off_the_frame() -> None:
    img, shape = images.subject_on_background(touch_bottom=True)
    alpha = images.decode(local_ops.cutout(images.encode(img)).data)[:, :, 3]
    bottom_rows = slice(-8, None)  # inside the 5 % band GrabCut's rectangle calls background
    assert (alpha[bottom_rows][shape[bottom_rows] > 0] >= 128).mean() > 0.9


def test_cutout_downscales_to_max_side() -> None:
    img, _ = images.subject_on_background(640, 480)
    result = local_ops.cutout(images.encode(img), max_side=200)
    assert images.decode(result.data).shape == (150, 200, 4)


def test_cutout_with_nothing_to_separate() -> None:
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert _code(lambda: local_ops.cutout(images.encode(flat))) == "no_foreground_found"
    assert _code(lambda: local_ops.cutout(images.encode(flat[:10, :10]))) == "bad_input"


# --- erase -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_erase_removes_the_scribble_and_touches_nothing_else(method: str) -> None:
    clean, dirty, mask = images.scribbled()
    result = local_ops.erase(images.encode(dirty), images.encode(mask), method=method)  # type: ignore[arg-type]
    out = images.decode(result.data).astype(np.int16)
    assert out.shape == dirty.shape
    hole = mask > 0
    diff_to_clean = np.abs(out[hole] - clean[hole].astype(np.int16))
    assert diff_to_clean.mean() < 6
    assert np.percentile(diff_to_clean.max(axis=1), 99) < 30
    assert np.abs(out[hole] - np.array(images.SCRIBBLE)).sum(axis=1).min() > 100
    # Everything beyond the reported dilation (plus a pixel of slack) is returned bit-exact.
    reach = 2 * (int(result.metadata["dilate_px"]) + 1) + 1  # type: ignore[call-overload]
    far = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach))) == 0
    assert np.array_equal(out[far], dirty[far])
    assert result.metadata["masked_ratio"] == pytest.approx(hole.mean(), abs=0.01)


def test_erase_accepts_smaller_label_and_transparent_masks() -> None:
    clean, dirty, mask = images.scribbled()
    half = cv2.resize(mask, (120, 90), interpolation=cv2.INTER_NEAREST)
    labels = (half > 0).astype(np.uint8)  # a 0/1 mask at half resolution
    strokes = np.zeros((180, 240, 4), np.uint8)
    strokes[mask > 0] = (255, 0, 0, 160)  # semi-opaque red brush on a transparent canvas
    hole = mask > 0
    for mask_bytes in (images.encode(labels), images.encode(strokes)):
        out = images.decode(local_ops.erase(images.encode(dirty), mask_bytes).data).astype(np.int16)
        assert np.abs(out[hole] - clean[hole]).mean() < 8


def test_erase_refuses_bad_masks_and_params() -> None:
    _, dirty, mask = images.scribbled()
    img = images.encode(dirty)
    empty = images.encode(np.zeros_like(mask))
    most = images.encode(np.full_like(mask, 255))
    wrong_shape = images.encode(np.full((100, 100), 255, np.uint8))
    for bad in (empty, most, wrong_shape, b"not an image"):  # the mask, not the image, is blamed
        assert _code(partial(local_ops.erase, img, bad)) == "bad_mask"
    assert _code(lambda: local_ops.erase(img, images.encode(mask), radius=0)) == "bad_params"
    assert _code(lambda: local_ops.erase(img, images.encode(mask), method="magic")) == "bad_params"  # type: ignore[arg-type]


# --- outpaint --------------------------------------------------------------------------------------


def test_outpaint_extends_with_colours_that_continue_the_border() -> None:
    img = images.halves(120, 80, (200, 60, 40), (40, 90, 200))
    result = local_ops.outpaint(images.encode(img), left=100, top=30, right=60, bottom=0)
    out = images.decode(result.data).astype(np.int16)
    assert out.shape == (110, 280, 3)
    assert result.metadata.items() >= {"width": 280, "height": 110, "scale": 1.0}.items()
    assert np.array_equal(out[30:110, 100:220], img)  # the original is untouched
    new = np.ones(out.shape[:2], bool)
    new[30:110, 100:220] = False
    assert out[new].sum(axis=1).min() > 100  # nothing left black
    left_band = out[30:110, :100].reshape(-1, 3).mean(axis=0)
    right_band = out[30:110, 220:].reshape(-1, 3).mean(axis=0)
    assert np.abs(left_band - (200, 60, 40)).max() < 25  # continues the red side
    assert np.abs(right_band - (40, 90, 200)).max() < 25  # continues the blue side
    assert np.abs(out[29, 100:150] - (200, 60, 40)).max() < 10  # seam row matches its neighbour


def test_outpaint_keeps_alpha_and_scales_to_max_side() -> None:
    rgba = np.dstack([images.gradient(100, 50, (10, 200, 10), (200, 10, 10)), np.full((50, 100), 90, np.uint8)])
    result = local_ops.outpaint(images.encode(rgba), left=100, top=0, right=100, bottom=50, max_side=150)
    out = images.decode(result.data)
    assert out.shape == (50, 150, 4)
    assert result.metadata["scale"] == 0.5
    assert (result.metadata["left"], result.metadata["right"], result.metadata["bottom"]) == (50, 50, 25)
    assert np.abs(out[:, :, 3].astype(int) - 90).max() <= 1


def test_outpaint_refuses_bad_margins() -> None:
    img = images.encode(np.full((10, 20, 3), 100, np.uint8))

    def margins(left: object, top: object, right: object, bottom: object) -> Callable[[], object]:
        return lambda: local_ops.outpaint(img, left=left, top=top, right=right, bottom=bottom)  # type: ignore[arg-type]

    for bad in ((0, 0, 0, 0), (41, 0, 0, 0), (0, 0, 0, 21), (-1, 5, 0, 0), (True, 0, 0, 0), (2.5, 0, 0, 0)):
        assert _code(margins(*bad)) == "bad_params", bad
    assert isinstance(margins(40, 20, 40, 20)(), OpResult)  # exactly 2× is allowed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_outpaint_size_is_input_plus_margins(data: st.DataObject) -> None:
    w = data.draw(st.integers(1, 24), label="width")
    h = data.draw(st.integers(1, 24), label="height")
    margins = data.draw(st.tuples(*(st.integers(0, 2 * side) for side in (w, h, w, h))), label="margins")
    if not any(margins):
        margins = (1, 0, 0, 0)
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    left, top, right, bottom = margins
    result = local_ops.outpaint(images.encode(img), left=left, top=top, right=right, bottom=bottom)
    out = images.decode(result.data)
    assert out.shape == (h + top + bottom, w + left + right, 3)
    assert np.array_equal(out[top : top + h, left : left + w], img)


# --- face swap -------------------------------------------------------------------------------------


def test_synthetic_faces_are_detectable() -> None:
    # The face-swap test below is only meaningful if the cascade really fires on the drawing.
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(images.cartoon_face(), cv2.COLOR_RGB2GRAY)
    assert len(cascade.detectMultiScale(cv2.equalizeHist(gray), 1.1, 5, minSize=(30, 30))) == 1


def test_face_swap_replaces_the_face_and_only_the_face() -> None:
    source = images.cartoon_face(300, 300, size=150, skin=(170, 120, 90), mouth=(40, 160, 60))
    target_arr = images.cartoon_face(480, 360, size=180, centre=(300, 170))
    result = local_ops.face_swap(images.encode(source), images.encode(target_arr))
    assert result.content_type == "image/jpeg"
    out = images.decode(result.data).astype(np.int16)
    assert out.shape == target_arr.shape
    x, y, w, h = cast(list[int], result.metadata["target_face_box"])
    assert abs(x + w / 2 - 300) < 30
    assert abs(y + h / 2 - 170) < 40
    sx, sy, sw, sh = cast(list[int], result.metadata["source_face_box"])
    assert abs(sx + sw / 2 - 150) < 30
    assert abs(sy + sh / 2 - 150) < 30
    target = target_arr.astype(np.int16)
    face = (slice(y, y + h), slice(x, x + w))
    assert np.abs(out[face] - target[face]).mean() > 5  # visibly different inside the face box
    # The green source mouth survives the LAB colour transfer as a hue shift toward green.
    mouth = (slice(y + int(0.62 * h), y + int(0.8 * h)), slice(x + int(0.35 * w), x + int(0.65 * w)))
    assert out[mouth][..., 1].mean() - target[mouth][..., 1].mean() > 10
    assert np.abs(out[:, :100] - target[:, :100]).mean() < 2  # far outside: JPEG noise only


def test_face_swap_without_a_face() -> None:
    face = images.encode(images.cartoon_face())
    plain = images.encode(images.gradient(300, 300, (90, 120, 150), (30, 60, 90)))
    assert _code(lambda: local_ops.face_swap(plain, face)) == "no_face_found"
    assert _code(lambda: local_ops.face_swap(face, plain)) == "no_face_found"


def test_face_detection_is_safe_across_threads() -> None:
    face = images.encode(images.cartoon_face())
    with ThreadPoolExecutor(max_workers=4) as pool:
        boxes = list(pool.map(lambda _: local_ops.face_swap(face, face).metadata["target_face_box"], range(8)))
    assert all(box == boxes[0] for box in boxes)


# --- decoding, limits, helpers ---------------------------------------------------------------------

_EVERY_OP: list[Callable[[bytes], object]] = [
    local_ops.cutout,
    lambda b: local_ops.erase(b, b),
    lambda b: local_ops.outpaint(b, left=1, top=0, right=0, bottom=0),
    lambda b: local_ops.face_swap(b, b),
    lambda b: local_ops.thumbnail(b, max_side=64),
]


@pytest.mark.parametrize("op", _EVERY_OP)
def test_corrupt_input_is_bad_input(op: Callable[[bytes], object]) -> None:
    truncated = images.encode(images.gradient(64, 64, (0, 0, 0), (255, 255, 255)))[:-60]
    for data in (b"", b"\x89PNG\r\n\x1a\n garbage", b"GIF89a" + bytes(100), truncated):
        assert _code(partial(op, data)) == "bad_input"


@pytest.mark.parametrize("op", _EVERY_OP)
def test_pixel_budget_is_enforced_from_the_header(op: Callable[[bytes], object]) -> None:
    # 10000×5000 = 50 MP claimed by a 70-byte file: refused by the default 40 MP budget, undecoded.
    assert _code(lambda: op(images.png_claiming_size(10_000, 5_000))) == "image_too_large"


def test_pixel_budget_is_a_parameter() -> None:
    img = images.encode(np.zeros((200, 200, 3), np.uint8))
    assert _code(lambda: local_ops.thumbnail(img, max_side=50, max_pixels=39_999)) == "image_too_large"
    assert _code(lambda: local_ops.outpaint(img, left=0, top=0, right=200, bottom=0, max_pixels=50_000)) == (
        "image_too_large"
    )
    assert local_ops.thumbnail(img, max_side=50, max_pixels=40_000).metadata["width"] == 50


def test_exif_orientation_is_applied() -> None:
    stored = images.halves(60, 30, (220, 30, 30), (30, 30, 220))  # red left, blue right
    data = images.with_orientation(stored, 6)  # "rotate 90° clockwise to display"
    info = local_ops.image_info(data)
    assert (info["width"], info["height"], info["format"]) == (30, 60, "JPEG")
    out = images.decode(local_ops.thumbnail(data, max_side=100).data).astype(np.int16)
    assert out.shape == (60, 30, 3)
    assert np.abs(out[5:25].mean(axis=(0, 1)) - (220, 30, 30)).max() < 20  # red is now on top
    assert np.abs(out[35:55].mean(axis=(0, 1)) - (30, 30, 220)).max() < 20
    png = images.decode(
        local_ops.outpaint(images.with_orientation(stored, 6, "PNG"), left=0, top=0, right=2, bottom=0).data
    )
    assert png.shape == (60, 32, 3)


def test_thumbnail_and_image_info() -> None:
    img = images.encode(images.gradient(400, 100, (0, 0, 0), (255, 255, 255)))
    small = local_ops.thumbnail(img, max_side=100)
    assert (small.content_type, small.metadata) == (
        "image/jpeg",
        {"width": 100, "height": 25, "source_width": 400, "source_height": 100},
    )
    assert images.decode(local_ops.thumbnail(img, max_side=1000).data).shape == (100, 400, 3)  # never upscales
    rgba = images.encode(np.zeros((40, 40, 4), np.uint8))
    assert local_ops.thumbnail(rgba, max_side=20).content_type == "image/png"
    assert local_ops.image_info(rgba) == {
        "format": "PNG",
        "width": 40,
        "height": 40,
        "mode": "RGBA",
        "has_alpha": True,
        "frames": 1,
    }
    webp = images.encode(np.zeros((30, 50, 3), np.uint8), "WEBP")
    assert local_ops.image_info(webp)["format"] == "WEBP"
    assert local_ops.image_info(images.png_claiming_size(10_000, 5_000))["width"] == 10_000
    grey16 = images.encode(np.full((20, 20), 0x8080, np.uint16))  # 16-bit PNG: must rescale, not clip
    assert str(local_ops.image_info(grey16)["mode"]).startswith("I")
    assert abs(int(images.decode(local_ops.thumbnail(grey16, max_side=10).data).mean()) - 128) <= 2
    assert _code(lambda: local_ops.thumbnail(img, max_side=0)) == "bad_params"
