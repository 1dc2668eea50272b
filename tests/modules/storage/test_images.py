"""Verification of uploaded images: sniffed type, pixel cap, decompression bombs, truncation."""

from __future__ import annotations

import warnings

import pytest
from PIL import Image

from tests.modules.storage import samples
from wardrobe.modules.storage.images import ImageRejected, inspect_image, verify_image

CAP = 40_000_000
FORMATS = [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]


@pytest.mark.parametrize(("fmt", "content_type"), FORMATS)
async def test_real_images_pass_with_their_dimensions(fmt: str, content_type: str) -> None:
    info = await verify_image(samples.noise(48, 32, fmt), content_type, CAP)
    assert (info.content_type, info.width, info.height) == (content_type, 48, 32)


def _reason(data: bytes, declared: str, cap: int = CAP) -> str:
    with pytest.raises(ImageRejected) as caught:
        inspect_image(data, declared, cap)
    assert caught.value.message
    return caught.value.reason


def test_the_declared_type_must_be_the_real_one() -> None:
    assert _reason(samples.noise(fmt="JPEG"), "image/png") == "type_mismatch"
    assert _reason(samples.noise(fmt="PNG"), "image/webp") == "type_mismatch"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is text pretending to be an image",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        samples.noise(fmt="GIF"),
        samples.noise(fmt="BMP"),
        samples.noise(fmt="TIFF"),
    ],
)
def test_other_content_is_not_an_accepted_image(data: bytes) -> None:
    assert _reason(data, "image/png") == "unsupported_format"


def test_a_valid_but_enormous_png_is_refused_before_decoding() -> None:
    bomb = samples.png_bomb(20_000, 20_000)  # 400 MP: beyond even Pillow's own hard limit
    assert len(bomb) < 200_000
    assert _reason(bomb, "image/png") == "too_many_pixels"


def test_the_pixel_cap_applies_below_pillows_own_limit() -> None:
    # 64 MP is under Pillow's default limit (~89 MP): only our cap stands in the way.
    big = samples.png_bomb(8_000, 8_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and Pillow had nothing to warn about
        assert _reason(big, "image/png") == "too_many_pixels"
    assert _reason(samples.noise(200, 100), "image/png", cap=19_999) == "too_many_pixels"
    assert inspect_image(samples.noise(200, 100), "image/png", 20_000).width == 200


def test_a_header_that_claims_huge_dimensions_is_refused() -> None:
    assert _reason(samples.png_claiming(100_000, 100_000), "image/png") == "too_many_pixels"


def test_pillows_warning_band_is_refused_without_touching_global_state() -> None:
    # 100 MP: Pillow warns (between its 1x and 2x limits); our cap refuses it either way.
    limit_before = Image.MAX_IMAGE_PIXELS
    filters_before = list(warnings.filters)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert _reason(samples.png_claiming(10_000, 10_000), "image/png") == "too_many_pixels"
    assert limit_before == Image.MAX_IMAGE_PIXELS
    assert warnings.filters == filters_before
    # Escalated to an error by someone else, the warning still means "too many pixels".
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert _reason(samples.png_claiming(10_000, 10_000), "image/png", cap=10**12) == "too_many_pixels"


@pytest.mark.parametrize(("fmt", "content_type"), FORMATS)
def test_truncated_images_are_corrupt(fmt: str, content_type: str) -> None:
    whole = samples.noise(64, 64, fmt)
    assert _reason(samples.truncated(whole), content_type) == "corrupt"


def test_a_damaged_png_chunk_is_corrupt() -> None:
    data = bytearray(samples.noise(64, 64))
    data[data.index(b"IDAT") + 20] ^= 0xFF  # inside IDAT: its CRC no longer matches
    assert _reason(bytes(data), "image/png") == "corrupt"


def test_a_zero_pixel_header_is_not_an_image() -> None:
    assert _reason(samples.png_claiming(0, 10), "image/png") == "unsupported_format"
