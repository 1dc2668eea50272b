"""The aiart and SCF services of the Tencent Cloud peer behave as documented, checked with the
official async SDKs and with raw signed requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image, PngImagePlugin
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tencentcloud.aiart.v20221229 import models as aiart_models
from tencentcloud.aiart.v20221229.aiart_client_async import AiartClient
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416 import models as scf_models
from tencentcloud.scf.v20180416.scf_client_async import ScfClient

from tests.fixtures.realtime import live
from tests.peers.fixtures import PeerClock, ServedTencentCloudPeer
from tests.peers.tencent_aiart import AIART_VERSION
from tests.peers.tencent_cloud import TEST_REGION, TEST_SECRET_ID, TEST_SECRET_KEY, signed_headers_for
from tests.peers.tencent_scf import TEST_SCF_CALLBACK_KEY, TEST_SCF_FUNCTION


def _profile(peer: ServedTencentCloudPeer) -> ClientProfile:
    return ClientProfile(httpProfile=HttpProfile(endpoint=peer.host_port, protocol="http", reqTimeout=5))


@pytest.fixture
async def aiart(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[AiartClient]:
    client = AiartClient(Credential(TEST_SECRET_ID, TEST_SECRET_KEY), TEST_REGION, _profile(tencent_peer))
    yield client
    await client.close()


@pytest.fixture
async def scf(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[ScfClient]:
    client = ScfClient(Credential(TEST_SECRET_ID, TEST_SECRET_KEY), TEST_REGION, _profile(tencent_peer))
    yield client
    await client.close()


def png_b64(*, size: tuple[int, int] = (32, 24), text: str | None = None) -> str:
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    out = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(out, format="PNG", pnginfo=info)
    return base64.b64encode(out.getvalue()).decode()


def refine(**fields: Any) -> aiart_models.RefineImageRequest:
    request = aiart_models.RefineImageRequest()
    for name, value in fields.items():
        setattr(request, name, value)
    return request


# -- aiart -----------------------------------------------------------------------------------


async def test_aiart_answers_a_real_png_as_base64_or_url(
    tencent_peer: ServedTencentCloudPeer, aiart: AiartClient, peer_clock: PeerClock
) -> None:
    as_base64 = await aiart.RefineImage(refine(InputImage=png_b64()))
    as_url = await aiart.RefineImage(refine(InputUrl="https://example.test/a.png", RspImgType="url"))

    assert Image.open(io.BytesIO(base64.b64decode(as_base64.ResultImage))).format == "PNG"
    async with httpx.AsyncClient(timeout=5) as http:
        fetched = await http.get(as_url.ResultImage)
        peer_clock.advance(3600)
        expired = await http.get(as_url.ResultImage)
    assert (fetched.status_code, fetched.headers["content-type"]) == (200, "image/png")
    assert expired.status_code == 404
    assert tencent_peer.aiart.calls["RefineImage"] == 2


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, "InvalidParameterValue.ParameterValueError"),
        ({"InputImage": "x", "InputUrl": "https://example.test/a.png"}, "InvalidParameterValue.ParameterValueError"),
        ({"InputImage": "bm90IGFuIGltYWdl"}, "FailedOperation.ImageDecodeFailed"),
        ({"InputUrl": "ftp://example.test/a.png"}, "InvalidParameterValue.UrlIllegal"),
        ({"InputUrl": "https://example.test/unsafe.png"}, "OperationDenied.ImageIllegalDetected"),
    ],
    ids=["neither", "both", "not-image", "bad-url", "unsafe-url"],
)
async def test_aiart_checks_its_image_inputs(aiart: AiartClient, fields: dict[str, Any], code: str) -> None:
    with pytest.raises(TencentCloudSDKException) as refused:
        await aiart.RefineImage(refine(**fields))

    assert refused.value.code == code


async def test_aiart_unsafe_content_and_job_limit(tencent_peer: ServedTencentCloudPeer, aiart: AiartClient) -> None:
    tencent_peer.aiart.limit_jobs_next(1)

    with pytest.raises(TencentCloudSDKException) as limited:
        await aiart.RefineImage(refine(InputImage=png_b64()))
    with pytest.raises(TencentCloudSDKException) as unsafe:
        await aiart.RefineImage(refine(InputImage=png_b64(text="unsafe")))
    mask = aiart_models.ImageInpaintingRemovalRequest()
    mask.InputImage, mask.Mask = png_b64(), png_b64(size=(8, 8))
    with pytest.raises(TencentCloudSDKException) as mismatched:
        await aiart.ImageInpaintingRemoval(mask)

    assert limited.value.code == "RequestLimitExceeded.JobNumExceed"
    assert unsafe.value.code == "OperationDenied.ImageIllegalDetected"
    assert mismatched.value.code == "InvalidParameterValue.ParameterValueError"
    assert tencent_peer.aiart.calls["RefineImage"] == 0


async def test_aiart_scope_must_name_aiart(tencent_peer: ServedTencentCloudPeer) -> None:
    body = json.dumps({"InputImage": png_b64()}).encode()
    headers = signed_headers_for(
        host=tencent_peer.host_port,
        body=body,
        timestamp=int(tencent_peer.clock()),
        service="hunyuan",
        action="RefineImage",
        version=AIART_VERSION,
    )
    async with httpx.AsyncClient(timeout=5) as http:
        answer = (await http.post(tencent_peer.base_url + "/", content=body, headers=headers)).json()

    assert answer["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"


# -- SCF -------------------------------------------------------------------------------------


class Receiver:
    """Our side of the callback, reduced to recording what arrives."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

        async def receive(request: Request) -> Response:
            self.bodies.append(json.loads(await request.body()))
            return Response(b"{}", media_type="application/json")

        self.app = Starlette(routes=[Route("/cb", receive, methods=["POST"])])


def invoke_request(callback: str, *, name: str = TEST_SCF_FUNCTION, **event: Any) -> scf_models.InvokeRequest:
    request = scf_models.InvokeRequest()
    request.FunctionName = name
    request.InvocationType = "Event"
    request.ClientContext = json.dumps(
        {"ref": "t.s", "invocation": "t.s#1", "callback_url": callback, "inputs": {}, **event}
    )
    return request


async def test_an_event_invocation_answers_at_once_and_calls_back_signed(
    tencent_peer: ServedTencentCloudPeer, scf: ScfClient
) -> None:
    receiver = Receiver()
    async with live(receiver.app) as base:
        answer = await scf.Invoke(invoke_request(f"{base}/cb"))
        [delivery] = await tencent_peer.scf.wait_deliveries(1)

    request_id = answer.Result.FunctionRequestId
    [body] = receiver.bodies
    payload = json.loads(body["payload"])
    expected = hmac.new(TEST_SCF_CALLBACK_KEY.encode(), body["payload"].encode(), hashlib.sha256).hexdigest()
    assert body["signature"] == expected
    assert (payload["ref"], payload["invocation"], payload["request_id"], payload["status"]) == (
        "t.s",
        "t.s#1",
        request_id,
        "succeeded",
    )
    assert (delivery.request_id, delivery.status_code) == (request_id, 200)
    status = scf_models.GetAsyncEventStatusRequest()
    status.InvokeRequestId = request_id
    assert (await scf.GetAsyncEventStatus(status)).Result.Status == "FINISHED"


async def test_manual_hooks_send_duplicates_forgeries_and_stale_results(
    tencent_peer: ServedTencentCloudPeer, scf: ScfClient
) -> None:
    tencent_peer.scf.auto = False
    receiver = Receiver()
    async with live(receiver.app) as base:
        request_id = (await scf.Invoke(invoke_request(f"{base}/cb"))).Result.FunctionRequestId
        assert receiver.bodies == []  # nothing until the test says
        await tencent_peer.scf.deliver(request_id)
        await tencent_peer.scf.deliver(request_id, kind="duplicate")
        await tencent_peer.scf.deliver(request_id, kind="forged", key="guessed")
        await tencent_peer.scf.deliver(request_id, kind="tampered", tamper=True)
        await tencent_peer.scf.deliver(request_id, kind="stale", invocation="t.s#0")

    genuine, duplicate, forged, tampered, stale = receiver.bodies
    key = TEST_SCF_CALLBACK_KEY.encode()

    def valid(body: dict[str, Any]) -> bool:
        expected = hmac.new(key, body["payload"].encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, body["signature"])

    assert duplicate == genuine
    assert [valid(b) for b in (genuine, forged, tampered, stale)] == [True, False, False, True]
    assert json.loads(stale["payload"])["invocation"] == "t.s#0"
    assert [d.kind for d in tencent_peer.scf.deliveries] == ["result", "duplicate", "forged", "tampered", "stale"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"name": "no-such-fn"}, "ResourceNotFound.Function"),
        ({"Namespace": "elsewhere"}, "ResourceNotFound.Namespace"),
        ({"Qualifier": "7"}, "ResourceNotFound.Qualifier"),
        ({"InvocationType": "Later"}, "InvalidParameterValue.InvokeType"),
        ({"ClientContext": "[1, 2]"}, "InvalidParameterValue.ClientContext"),
        ({"ClientContext": json.dumps({"blob": "x" * 200_000})}, "InvalidParameterValue.ClientContext"),
    ],
    ids=["function", "namespace", "qualifier", "type", "not-object", "too-big"],
)
async def test_invoke_errors(
    tencent_peer: ServedTencentCloudPeer, scf: ScfClient, change: dict[str, Any], code: str
) -> None:
    request = invoke_request("http://127.0.0.1:9/cb", name=change.pop("name", TEST_SCF_FUNCTION))
    for field_name, value in change.items():
        setattr(request, field_name, value)

    with pytest.raises(TencentCloudSDKException) as refused:
        await scf.Invoke(request)

    assert refused.value.code == code
    assert tencent_peer.scf.invocations == {}


async def test_an_aborted_invocation_never_calls_back_and_reports_failed(
    tencent_peer: ServedTencentCloudPeer, scf: ScfClient
) -> None:
    tencent_peer.scf.abort_next()
    receiver = Receiver()
    async with live(receiver.app) as base:
        request_id = (await scf.Invoke(invoke_request(f"{base}/cb"))).Result.FunctionRequestId
        status = scf_models.GetAsyncEventStatusRequest()
        status.InvokeRequestId = request_id
        reported = (await scf.GetAsyncEventStatus(status)).Result.Status

    assert reported == "FAILED"
    assert tencent_peer.scf.deliveries == []
    assert receiver.bodies == []
