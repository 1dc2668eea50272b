"""The TMS/IMS services of the Tencent Cloud peer answer as Tencent documents them: checked with
the official async SDKs and with raw signed requests."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.ims.v20201229 import models as ims_models
from tencentcloud.ims.v20201229.ims_client_async import ImsClient
from tencentcloud.tms.v20201229 import models as tms_models
from tencentcloud.tms.v20201229.tms_client_async import TmsClient

from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import TEST_REGION, TEST_SECRET_ID, TEST_SECRET_KEY, signed_headers_for
from tests.peers.tencent_moderation import BLOCK_COLOUR, MODERATION_VERSION, REVIEW_COLOUR, coloured_png


@pytest.fixture
async def clients(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[tuple[TmsClient, ImsClient]]:
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=tencent_peer.host_port, protocol="http", reqTimeout=5))
    credential = Credential(TEST_SECRET_ID, TEST_SECRET_KEY)
    tms, ims = TmsClient(credential, TEST_REGION, profile), ImsClient(credential, TEST_REGION, profile)
    yield tms, ims
    await tms.close()
    await ims.close()


def text_request(text: str, **fields: Any) -> tms_models.TextModerationRequest:
    request = tms_models.TextModerationRequest()
    request.Content = base64.b64encode(text.encode()).decode()
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def image_request(**fields: Any) -> ims_models.ImageModerationRequest:
    request = ims_models.ImageModerationRequest()
    for name, value in fields.items():
        setattr(request, name, value)
    return request


async def raw_post(peer: ServedTencentCloudPeer, params: dict[str, Any], **sign: Any) -> dict[str, Any]:
    body = json.dumps(params).encode()
    headers = signed_headers_for(
        host=peer.host_port,
        body=body,
        timestamp=int(peer.clock()),
        **{"service": "tms", "action": "TextModeration", "version": MODERATION_VERSION, **sign},
    )
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(peer.base_url + "/", content=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer: dict[str, Any] = response.json()["Response"]
    return answer


async def test_text_verdicts_with_labels_and_keywords(clients: tuple[TmsClient, ImsClient]) -> None:
    tms, _ = clients

    clean = await tms.TextModeration(text_request("一只猫", BizType="wardrobe_text", DataId="t-1"))
    blocked = await tms.TextModeration(text_request("含有违禁样本的文字"))
    review = await tms.TextModeration(text_request("some peer-review-word"))

    assert (clean.Suggestion, clean.Label, clean.Keywords, clean.DataId, clean.BizType) == (
        "Pass",
        "Normal",
        [],
        "t-1",
        "wardrobe_text",
    )
    assert (blocked.Suggestion, blocked.Label, blocked.Keywords, blocked.Score) == (
        "Block",
        "Illegal",
        ["违禁样本"],
        99,
    )
    assert blocked.DetailResults[0].Suggestion == "Block"
    assert (review.Suggestion, review.Label) == ("Review", "Abuse")
    assert clean.RequestId


async def test_image_verdicts_by_colour_and_by_url(
    clients: tuple[TmsClient, ImsClient], tencent_peer: ServedTencentCloudPeer
) -> None:
    _, ims = clients

    def content(colour: tuple[int, int, int]) -> ims_models.ImageModerationRequest:
        return image_request(FileContent=base64.b64encode(coloured_png(colour)).decode())

    clean = await ims.ImageModeration(content((10, 20, 30)))
    blocked = await ims.ImageModeration(content(BLOCK_COLOUR))
    review = await ims.ImageModeration(content(REVIEW_COLOUR))
    by_url = await ims.ImageModeration(image_request(FileUrl="https://cdn.example.test/ims-block/x.png"))

    assert (clean.Suggestion, clean.Label) == ("Pass", "Normal")
    assert (blocked.Suggestion, blocked.Label, blocked.SubLabel) == ("Block", "Porn", "SexyBehavior")
    assert blocked.LabelResults[0].Suggestion == "Block"
    assert (review.Suggestion, review.Label) == ("Review", "Sexy")
    assert (by_url.Suggestion, by_url.Label, by_url.FileMD5) == ("Block", "Porn", "")
    assert len(clean.FileMD5) == 32
    assert tencent_peer.moderation.calls["ImageModeration"] == 4


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, "InvalidParameterValue.EmptyImageContent"),
        ({"FileContent": "aGVsbG8=", "FileUrl": "https://x.test/a.png"}, "InvalidParameter.InvalidParameter"),
        ({"FileContent": "%%%"}, "InvalidParameterValue.InvalidImageContent"),
        ({"FileContent": "aGVsbG8="}, "InvalidParameterValue.InvalidImageContent"),  # "hello": not an image
        ({"FileUrl": "ftp://x"}, "InvalidParameterValue.InvalidFileUrl"),
        ({"FileUrl": "https://x.test/a.png", "BizType": "nope"}, "InvalidParameterValue.InvalidBizType"),
        ({"FileUrl": "https://x.test/a.png", "DataId": "has space"}, "InvalidParameterValue.InvalidDataId"),
    ],
)
async def test_image_requests_are_checked(
    clients: tuple[TmsClient, ImsClient], tencent_peer: ServedTencentCloudPeer, fields: dict[str, Any], code: str
) -> None:
    _, ims = clients

    with pytest.raises(TencentCloudSDKException) as refused:
        await ims.ImageModeration(image_request(**fields))

    assert refused.value.code == code
    assert tencent_peer.moderation.calls.total() == 0


async def test_text_requests_are_checked(tencent_peer: ServedTencentCloudPeer) -> None:
    too_long = base64.b64encode(("猫" * 10_001).encode()).decode()

    assert (await raw_post(tencent_peer, {}))["Error"]["Code"] == "MissingParameter"
    assert (await raw_post(tencent_peer, {"Content": "%%"}))["Error"][
        "Code"
    ] == "InvalidParameterValue.ErrTextContentType"
    assert (await raw_post(tencent_peer, {"Content": too_long}))["Error"]["Code"] == (
        "InvalidParameterValue.ErrTextContentLen"
    )
    assert (await raw_post(tencent_peer, {"Content": "5L2g5aW9", "Type": "X"}))["Error"]["Code"] == (
        "InvalidParameterValue.ErrType"
    )
    assert (await raw_post(tencent_peer, {"Content": "5L2g5aW9"}))["Suggestion"] == "Pass"  # "你好"


async def test_signature_scope_and_version_are_verified(tencent_peer: ServedTencentCloudPeer) -> None:
    params = {"Content": "5L2g5aW9"}

    wrong_key = await raw_post(tencent_peer, params, secret_key="not-the-key")
    wrong_scope = await raw_post(tencent_peer, params, service="ims")  # TMS action signed for IMS
    old_version = await raw_post(tencent_peer, params, version="2020-07-13")
    image_as_text = await raw_post(tencent_peer, params, service="ims", action="ImageModeration")

    assert wrong_key["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert wrong_scope["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert old_version["Error"]["Code"] == "NoSuchVersion"
    assert image_as_text["Error"]["Code"] == "InvalidParameterValue.EmptyImageContent"
    assert tencent_peer.moderation.calls.total() == 0
