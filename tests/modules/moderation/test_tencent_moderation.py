"""TMS/IMS adapters and the moderator against the Tencent Cloud peer over real HTTP: verdicts,
what is sent, outages, and the policy per purpose."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fixtures.tasks import free_port
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import TEST_SECRET_ID, TEST_SECRET_KEY
from tests.peers.tencent_moderation import BLOCK_COLOUR, REVIEW_COLOUR, coloured_png
from wardrobe.modules.moderation import Decision, KeywordList, ModerationUnavailable, Moderator, Purpose, Verdict
from wardrobe.modules.moderation.factory import build_moderator
from wardrobe.modules.moderation.gates import image_keys, prompt_fields, screen_images
from wardrobe.modules.moderation.tencent import (
    MAX_IMAGE_BYTES,
    UNANALYSABLE_LABEL,
    TencentImageModeration,
    TencentTextModeration,
)
from wardrobe.modules.storage.backend import LocalObjectStorage

Backends = Callable[..., tuple[TencentTextModeration, TencentImageModeration]]


@pytest.fixture
async def backends(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[Backends]:
    made: list[TencentTextModeration | TencentImageModeration] = []

    def make(**overrides: Any) -> tuple[TencentTextModeration, TencentImageModeration]:
        arguments: dict[str, Any] = {
            "secret_id": TEST_SECRET_ID,
            "secret_key": TEST_SECRET_KEY,
            "endpoint": tencent_peer.host_port,
            "scheme": "http",
            "timeout": 5.0,
            **overrides,
        }
        pair = (TencentTextModeration(**arguments), TencentImageModeration(**arguments))
        made.extend(pair)
        return pair

    yield make
    for backend in made:
        await backend.aclose()


@pytest.fixture
def storage(tmp_path: Path) -> LocalObjectStorage:
    return LocalObjectStorage(tmp_path, "", b"k" * 32)


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("一只穿毛衣的猫", Verdict(Decision.PASS, "Normal", "tms")),
        ("这里有违禁样本", Verdict(Decision.BLOCK, "Illegal", "tms")),
        ("a peer-review-word here", Verdict(Decision.REVIEW, "Abuse", "tms")),
    ],
)
async def test_text_verdicts(
    backends: Backends, tencent_peer: ServedTencentCloudPeer, text: str, expected: Verdict
) -> None:
    tms, _ = backends(biz_type="wardrobe_text")

    verdict = await tms.check(text, user_id=42, purpose="prompt", data_id="task-1")

    assert verdict == expected
    [(action, params)] = tencent_peer.moderation.requests
    assert action == "TextModeration"
    assert base64.b64decode(params["Content"]).decode() == text
    assert (params["BizType"], params["DataId"], params["User"]["UserId"]) == ("wardrobe_text", "task-1", "42")


async def test_long_text_is_checked_in_pieces_and_the_worst_wins(
    backends: Backends, tencent_peer: ServedTencentCloudPeer
) -> None:
    tms, _ = backends()

    verdict = await tms.check("猫" * 10_000 + "违禁样本", user_id=None, purpose="prompt")

    assert verdict.decision is Decision.BLOCK
    assert tencent_peer.moderation.calls["TextModeration"] == 2


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (coloured_png((200, 120, 40)), Verdict(Decision.PASS, "Normal", "ims")),
        (coloured_png(BLOCK_COLOUR), Verdict(Decision.BLOCK, "Porn", "ims")),
        (coloured_png(REVIEW_COLOUR), Verdict(Decision.REVIEW, "Sexy", "ims")),
    ],
)
async def test_image_verdicts(
    backends: Backends, tencent_peer: ServedTencentCloudPeer, image: bytes, expected: Verdict
) -> None:
    _, ims = backends(biz_type="wardrobe_image")

    verdict = await ims.check(image, user_id=7, purpose="output_image", data_id="abc")

    assert verdict == expected
    [(action, params)] = tencent_peer.moderation.requests
    assert action == "ImageModeration"
    assert base64.b64decode(params["FileContent"]) == image
    assert "FileUrl" not in params  # our objects are private: bytes, never a URL
    assert (params["BizType"], params["User"]["UserId"]) == ("wardrobe_image", "7")


async def test_an_image_too_large_for_one_call_is_scaled_down_first(
    backends: Backends, tencent_peer: ServedTencentCloudPeer
) -> None:
    raw = io.BytesIO()
    Image.new("RGB", (2000, 2000), BLOCK_COLOUR).save(raw, format="BMP")  # 12 MB, uncompressed
    big = raw.getvalue()
    _, ims = backends()

    verdict = await ims.check(big, user_id=None, purpose="output_image")

    assert len(big) > MAX_IMAGE_BYTES
    sent = base64.b64decode(tencent_peer.moderation.requests[0][1]["FileContent"])
    assert len(sent) < MAX_IMAGE_BYTES
    assert Image.open(io.BytesIO(sent)).format == "JPEG"
    assert verdict.decision is Decision.BLOCK  # still the same picture


async def test_an_image_tencent_cannot_read_is_review_unanalysable(backends: Backends) -> None:
    _, ims = backends()

    verdict = await ims.check(b"not an image at all", user_id=None, purpose="input_image")

    assert verdict == Verdict(Decision.REVIEW, UNANALYSABLE_LABEL, "ims")


@pytest.mark.parametrize(
    ("fault", "code", "retryable"),
    [
        ("InternalError.ErrTextTimeOut", "moderation_vendor_unavailable", True),
        ("RequestLimitExceeded", "moderation_vendor_busy", True),
        ("ResourceUnavailable.InQueueError", "moderation_vendor_unavailable", True),
        ("UnauthorizedOperation.Unauthorized", "moderation_vendor_refused", False),
        ("ResourceInsufficient", "moderation_vendor_refused", False),
    ],
)
async def test_vendor_errors_are_unavailable_with_the_right_class(
    backends: Backends, tencent_peer: ServedTencentCloudPeer, fault: str, code: str, retryable: bool
) -> None:
    tms, ims = backends()
    tencent_peer.fail_next(2, fault)

    with pytest.raises(ModerationUnavailable) as text_failure:
        await tms.check("你好", user_id=None, purpose="prompt")
    with pytest.raises(ModerationUnavailable) as image_failure:
        await ims.check(coloured_png((1, 2, 3)), user_id=None, purpose="output_image")

    assert (text_failure.value.code, text_failure.value.retryable, text_failure.value.source) == (
        code,
        retryable,
        "tms",
    )
    assert (image_failure.value.code, image_failure.value.retryable) == (code, retryable)
    assert tencent_peer.moderation.calls.total() == 0


async def test_wrong_credentials_and_unknown_biz_type_are_not_retryable(backends: Backends) -> None:
    wrong_key, _ = backends(secret_key="not-the-key")
    unknown_policy, _ = backends(biz_type="no_such_policy")

    for backend in (wrong_key, unknown_policy):
        with pytest.raises(ModerationUnavailable) as failure:
            await backend.check("你好", user_id=None, purpose="prompt")
        assert (failure.value.code, failure.value.retryable) == ("moderation_vendor_refused", False)


async def test_a_gateway_error_and_no_connection_are_retryable(
    backends: Backends, tencent_peer: ServedTencentCloudPeer
) -> None:
    tms, _ = backends()
    unreachable, _ = backends(endpoint=f"127.0.0.1:{free_port()}", timeout=2.0)
    tencent_peer.http_error_next(1, 502)

    with pytest.raises(ModerationUnavailable) as gateway:
        await tms.check("你好", user_id=None, purpose="prompt")
    with pytest.raises(ModerationUnavailable) as refused:
        await unreachable.check("你好", user_id=None, purpose="prompt")

    assert (gateway.value.code, gateway.value.retryable) == ("moderation_vendor_unavailable", True)
    assert (refused.value.code, refused.value.retryable) == ("moderation_vendor_unavailable", True)


# -- the moderator ------------------------------------------------------------------------------


async def test_keywords_decide_first_without_a_vendor_call(
    backends: Backends, tencent_peer: ServedTencentCloudPeer
) -> None:
    tms, _ = backends()
    moderator = Moderator(keywords=KeywordList([("坏词", "Local")]), text=tms)

    local = await moderator.check_text("坏 词", user_id=1)
    vendor = await moderator.check_text("违禁样本", user_id=1)

    assert local == Verdict(Decision.BLOCK, "Local", "keywords")
    assert vendor == Verdict(Decision.BLOCK, "Illegal", "tms")
    assert tencent_peer.moderation.calls["TextModeration"] == 1


async def test_without_a_vendor_text_uses_keywords_and_images_pass(storage: LocalObjectStorage) -> None:
    moderator = Moderator(keywords=KeywordList(["badword"]))

    assert (await moderator.check_text("BADWORD", user_id=1)).decision is Decision.BLOCK
    assert (await moderator.check_text("违禁样本", user_id=1)).passed
    assert await moderator.check_image(coloured_png(BLOCK_COLOUR), user_id=1, purpose=Purpose.OUTPUT_IMAGE) == Verdict(
        Decision.PASS, "Normal", "none"
    )
    assert not moderator.checks_images


def test_review_blocks_outputs_and_passes_inputs_by_default() -> None:
    moderator = Moderator(keywords=KeywordList())
    review = Verdict(Decision.REVIEW, "Sexy", "ims")
    block = Verdict(Decision.BLOCK, "Porn", "ims")

    assert [moderator.blocks(review, purpose) for purpose in Purpose] == [False, False, True]
    assert all(moderator.blocks(block, purpose) for purpose in Purpose)
    assert not moderator.blocks(Verdict(Decision.PASS), Purpose.OUTPUT_IMAGE)
    strict = Moderator(keywords=KeywordList(), review_blocks=list(Purpose))
    assert all(strict.blocks(review, purpose) for purpose in Purpose)


async def test_images_are_read_by_key_and_outages_retried_then_given_up(
    backends: Backends, tencent_peer: ServedTencentCloudPeer, storage: LocalObjectStorage
) -> None:
    _, ims = backends()
    moderator = Moderator(keywords=KeywordList(), image=ims, storage=storage, outage_attempts=3)
    await storage.put("results/1/2026/01/a.png", coloured_png(BLOCK_COLOUR), "image/png")
    await storage.put("results/1/2026/01/b.png", coloured_png((9, 9, 9)), "image/png")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    def screen(*keys: str) -> Any:
        return screen_images(moderator, keys, user_id=1, purpose=Purpose.OUTPUT_IMAGE, task_id="t1", sleep=sleep)

    assert await screen("results/1/2026/01/b.png") is None
    assert await screen("results/1/2026/01/b.png", "results/1/2026/01/a.png") == "content_blocked"
    tencent_peer.fail_next(2, "InternalError")
    assert await screen("results/1/2026/01/b.png") is None  # third try answers
    assert slept == [1.0, 2.0]
    tencent_peer.fail_next(3, "InternalError")
    assert await screen("results/1/2026/01/b.png") == "moderation_unavailable"
    tencent_peer.fail_next(1, "UnauthorizedOperation.Unauthorized")
    calls = tencent_peer.moderation.calls["ImageModeration"]
    assert await screen("results/1/2026/01/b.png") == "moderation_unavailable"  # no retry: not retryable
    assert tencent_peer.moderation.calls["ImageModeration"] == calls
    assert (
        await screen_images(
            Moderator(keywords=KeywordList()),
            ["results/x"],
            user_id=1,
            purpose=Purpose.INPUT_IMAGE,
            task_id="t",
            sleep=_no_sleep,
        )
        is None
    )


def test_which_inputs_are_prompts_and_which_values_are_images() -> None:
    schema = {"properties": {"caption": {"type": "string", "x-moderate": True}, "prompt_id": {"x-moderate": False}}}
    inputs = {"prompt": "a", "style_prompt": "b", "negative_prompt": "nsfw", "caption": "c", "prompt_id": "d", "n": 3}

    assert prompt_fields(schema, inputs) == ["prompt", "style_prompt", "caption"]
    outputs = {
        "image": {"object_key": "results/1/a.png", "content_type": "image/png"},
        "more": [{"object_key": "tmp/2026/b.jpg"}, {"object_key": "results/1/c.json", "content_type": "text/plain"}],
        "url": "https://vendor.example/x.png",
    }
    assert image_keys(outputs) == ["results/1/a.png", "tmp/2026/b.jpg"]
    assert image_keys({"image": "uploads/1/a.png", "key": "x"}, bare_prefixes=("uploads/",)) == ["uploads/1/a.png"]


async def test_the_factory_builds_each_mode(tencent_peer: ServedTencentCloudPeer, storage: LocalObjectStorage) -> None:
    local = build_moderator(backend="local", keywords=["extra"])
    tencent = build_moderator(
        backend="tencent",
        storage=storage,
        secret_id=TEST_SECRET_ID,
        secret_key=TEST_SECRET_KEY,
        endpoint=tencent_peer.host_port,
        scheme="http",
        text_biz_type="wardrobe_text",
    )
    try:
        assert (local.text, local.image) == (None, None)
        assert local.keywords.match("EXTRA") == "keyword"
        assert local.keywords.match("儿童色情") == "Porn"  # the shipped list is kept
        assert (await tencent.check_text("待审样本", user_id=1)).decision is Decision.REVIEW
        assert tencent.checks_images
    finally:
        await tencent.aclose()
    with pytest.raises(ValueError, match="SecretId"):
        build_moderator(backend="tencent", storage=storage)
    with pytest.raises(ValueError, match="backend"):
        build_moderator(backend="aliyun")


async def test_an_image_gone_from_storage_is_not_an_outage(
    backends: Backends, tencent_peer: ServedTencentCloudPeer, storage: LocalObjectStorage
) -> None:
    _, ims = backends()
    moderator = Moderator(keywords=KeywordList(), image=ims, storage=storage)

    code = await screen_images(
        moderator, ["uploads/1/2026/01/gone.png"], user_id=1, purpose=Purpose.INPUT_IMAGE, task_id="t", sleep=_no_sleep
    )

    assert code is None  # the step that needs it fails on its own (bad_input)
    assert tencent_peer.moderation.calls.total() == 0
