"""What of an image is kept (its bytes up to its own end) and what decoding it may cost in memory."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.modules.storage import samples
from wardrobe.modules.storage.image_end import NoImageEnd, image_end
from wardrobe.modules.storage.images import DEFAULT_MAX_DECODE_BYTES, ImageRejected, decoded_bytes, inspect_image

CAP = 40_000_000

IMAGES = {
    "png": (samples.noise(48, 32, "PNG"), "image/png"),
    "jpeg": (samples.noise(48, 32, "JPEG"), "image/jpeg"),
    "webp": (samples.noise(48, 32, "WEBP"), "image/webp"),
    "progressive-jpeg": (samples.progressive_jpeg(), "image/jpeg"),
    "jpeg-hiding-an-end-marker": (samples.jpeg_hiding_an_end_marker(), "image/jpeg"),
    "apng": (samples.animated("PNG", 3), "image/png"),
    "animated-webp": (samples.animated("WEBP", 3), "image/webp"),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
@pytest.mark.parametrize("tail", [b"", samples.PAGE, b"\x00" * 7, b"PK\x03\x04 a zip, or a phone's motion video"])
def test_the_image_ends_where_its_own_structure_says_whatever_follows(name: str, tail: bytes) -> None:
    image, content_type = IMAGES[name]
    info = inspect_image(image + tail, content_type, CAP)
    assert info.length == len(image)
    with Image.open(io.BytesIO((image + tail)[: info.length])) as kept, Image.open(io.BytesIO(image)) as original:
        assert kept.tobytes() == original.tobytes()


def test_a_naive_search_for_the_end_marker_would_cut_the_jpeg_short() -> None:
    image = samples.jpeg_hiding_an_end_marker()
    assert 0 < image.find(b"\xff\xd9") < len(image) - 2  # the first FF D9 is not the end
    assert image_end(image + samples.PAGE, "JPEG") == len(image)


def test_a_multi_picture_jpeg_keeps_its_first_picture_only() -> None:
    mpo = samples.multi_picture_jpeg()
    info = inspect_image(mpo + samples.PAGE, "image/jpeg", CAP)
    assert info.length < len(mpo)
    with Image.open(io.BytesIO(mpo[: info.length])) as kept, Image.open(io.BytesIO(mpo)) as original:
        assert kept.size == original.size == (48, 32)
        assert kept.tobytes() == original.tobytes()


@pytest.mark.parametrize(
    ("image_format", "data"), [("PNG", samples.noise(fmt="PNG")), ("WEBP", samples.noise(fmt="WEBP"))]
)
def test_a_container_that_does_not_reach_its_end_has_no_end(image_format: str, data: bytes) -> None:
    with pytest.raises(NoImageEnd):
        image_end(data[:-4], image_format)


def test_decoded_size_follows_mode_and_frames() -> None:
    def measure(data: bytes) -> int:
        with Image.open(io.BytesIO(data)) as img:
            return decoded_bytes(img)

    assert measure(samples.grey_png(40, 30, 8)) == 40 * 30  # L: one byte a pixel
    assert measure(samples.grey_png(40, 30, 16)) == 40 * 30 * 2  # I;16: two
    assert measure(samples.noise(40, 30, "PNG")) == 40 * 30 * 4  # RGB: Pillow keeps four
    assert measure(samples.animated("PNG", 3, 40, 30)) == 40 * 30 * 4 * 3  # every frame
    assert measure(samples.animated("WEBP", 5, 40, 30)) == 40 * 30 * 4 * 5
    # A progressive JPEG also holds its coefficients (3 components, 2 bytes each) until the end.
    assert measure(samples.progressive_jpeg(40, 30)) == 40 * 30 * 4 + 40 * 30 * 3 * 2
    assert measure(samples.multi_picture_jpeg(40, 30)) == 40 * 30 * 4  # only the first is kept


def _reason(data: bytes, declared: str, budget: int) -> str:
    with pytest.raises(ImageRejected) as caught:
        inspect_image(data, declared, CAP, budget)
    return caught.value.reason


def test_images_over_the_memory_budget_are_refused_whatever_their_pixel_count() -> None:
    budget = 100 * 100 * 2 - 1
    assert inspect_image(samples.grey_png(100, 100, 8), "image/png", CAP, budget).width == 100
    assert _reason(samples.grey_png(100, 100, 16), "image/png", budget) == "decoded_too_large"
    one_frame = samples.animated("PNG", 1, 40, 40)
    assert inspect_image(one_frame, "image/png", CAP, 40 * 40 * 4).length == len(one_frame)
    assert _reason(samples.animated("PNG", 4, 40, 40), "image/png", 40 * 40 * 4 * 3) == "decoded_too_large"
    assert _reason(samples.animated("WEBP", 4, 40, 40), "image/webp", 40 * 40 * 4 * 3) == "decoded_too_large"


def test_the_budget_is_checked_from_the_header_before_anything_is_decoded() -> None:
    # A header claiming 6000 x 6000 with a few bytes of data: decoding would find it truncated
    # ("corrupt"); the budget refuses it first, from the header alone.
    claim = samples.png_claiming(6_000, 6_000)
    assert len(claim) < 200
    assert _reason(claim, "image/png", DEFAULT_MAX_DECODE_BYTES) == "corrupt"  # within budget: decoded
    assert _reason(claim, "image/png", 6_000 * 6_000 - 1) == "decoded_too_large"


def test_by_default_36_megapixels_pass_in_one_bit_and_are_refused_in_colour() -> None:
    # Both under the 40 MP cap and small on the wire; in RGB they would take 144 MB.
    bomb = samples.png_bomb(6_000, 6_000)
    assert len(bomb) < 100_000
    with Image.open(io.BytesIO(bomb)) as img:
        assert img.mode == "1"  # 1-bit: one byte a pixel in memory, 36 MB
        assert decoded_bytes(img) == 36_000_000 <= DEFAULT_MAX_DECODE_BYTES
    rgb = samples.png_claiming_rgb(6_000, 6_000)
    assert _reason(rgb, "image/png", DEFAULT_MAX_DECODE_BYTES) == "decoded_too_large"
