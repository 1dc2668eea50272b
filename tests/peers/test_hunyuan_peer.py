"""The Hunyuan service of the Tencent Cloud peer behaves as Tencent documents it, checked with the
official async SDK and with raw signed requests."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from PIL import Image
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.hunyuan.v20230901 import models
from tencentcloud.hunyuan.v20230901.hunyuan_client_async import HunyuanClient

from tests.peers.fixtures import PeerClock, ServedTencentCloudPeer
from tests.peers.tencent_cloud import (
    TEST_REGION,
    TEST_SECRET_ID,
    TEST_SECRET_KEY,
    TencentCloudPeer,
    signed_headers_for,
)
from tests.peers.tencent_hunyuan import HUNYUAN_VERSION

ClientFactory = Callable[..., HunyuanClient]


@pytest.fixture
async def hunyuan(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[ClientFactory]:
    clients: list[HunyuanClient] = []

    def make(
        secret_id: str = TEST_SECRET_ID,
        secret_key: str = TEST_SECRET_KEY,
        region: str = TEST_REGION,
        timeout: float = 5,
    ) -> HunyuanClient:
        profile = ClientProfile(
            httpProfile=HttpProfile(endpoint=tencent_peer.host_port, protocol="http", reqTimeout=timeout)
        )
        client = HunyuanClient(Credential(secret_id, secret_key), region, profile)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def submit_request(prompt: str = "一只穿毛衣的猫", **fields: Any) -> models.SubmitHunyuanImageJobRequest:
    request = models.SubmitHunyuanImageJobRequest()
    request.Prompt = prompt
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def content_image(url: str) -> models.Image:
    image = models.Image()
    image.ImageUrl = url
    return image


async def query(client: HunyuanClient, job_id: str) -> models.QueryHunyuanImageJobResponse:
    request = models.QueryHunyuanImageJobRequest()
    request.JobId = job_id
    return await client.QueryHunyuanImageJob(request)


async def states_until_done(client: HunyuanClient, job_id: str, limit: int = 10) -> list[str]:
    states: list[str] = []
    for _ in range(limit):
        response = await query(client, job_id)
        states.append(response.JobStatusCode)
        if response.JobStatusCode in ("4", "5"):
            break
    return states


async def raw_post(peer: ServedTencentCloudPeer, params: dict[str, Any], **sign: Any) -> dict[str, Any]:
    body = json.dumps(params).encode()
    headers = signed_headers_for(
        host=peer.host_port,
        body=body,
        timestamp=int(peer.clock()),
        **{"service": "hunyuan", "action": "SubmitHunyuanImageJob", "version": HUNYUAN_VERSION, **sign},
    )
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(peer.base_url + "/", content=body, headers=headers)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()["Response"]
    return answer


def error_code(answer: dict[str, Any]) -> str | None:
    error = answer.get("Error")
    return str(error["Code"]) if error else None


# -- the job lifecycle -----------------------------------------------------------------------


async def test_job_goes_waiting_running_done_with_fetchable_png(
    tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory
) -> None:
    client = hunyuan()

    submitted = await client.SubmitHunyuanImageJob(submit_request(Num=2, Resolution="768:1024"))
    states = await states_until_done(client, submitted.JobId)
    done = await query(client, submitted.JobId)

    assert submitted.RequestId
    assert states == ["1", "2", "5"]
    assert done.ResultDetails == ["Success", "Success"]
    assert done.RevisedPrompt[0].startswith("一只穿毛衣的猫")
    assert len(done.ResultImage) == 2
    async with httpx.AsyncClient(timeout=5) as http:
        image = await http.get(done.ResultImage[1])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).format == "PNG"
    assert tencent_peer.hunyuan.submits == 1
    assert tencent_peer.action_calls["QueryHunyuanImageJob"] == 4


async def test_revise_off_returns_the_prompt_unchanged(hunyuan: ClientFactory) -> None:
    client = hunyuan()

    job = await client.SubmitHunyuanImageJob(submit_request("a red dress", Revise=0))
    await states_until_done(client, job.JobId)

    assert (await query(client, job.JobId)).RevisedPrompt == ["a red dress"]


async def test_result_urls_expire_after_an_hour_on_the_peer_clock(
    hunyuan: ClientFactory, peer_clock: PeerClock
) -> None:
    client = hunyuan()
    job = await client.SubmitHunyuanImageJob(submit_request())
    await states_until_done(client, job.JobId)
    [url] = (await query(client, job.JobId)).ResultImage

    async with httpx.AsyncClient(timeout=5) as http:
        peer_clock.advance(3599)
        before = await http.get(url)
        peer_clock.advance(1)
        after = await http.get(url)
        beyond_count = await http.get(url.replace("/0.png", "/1.png"))

    assert before.status_code == 200
    assert after.status_code == 404
    assert beyond_count.status_code == 404


async def test_result_url_of_an_unfinished_job_is_not_found(
    tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory
) -> None:
    job = await hunyuan().SubmitHunyuanImageJob(submit_request())

    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"{tencent_peer.base_url}/hunyuan/results/{job.JobId}/0.png")

    assert response.status_code == 404


async def test_one_job_runs_at_a_time_and_the_next_waits(
    tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory
) -> None:
    client = hunyuan()
    first = (await client.SubmitHunyuanImageJob(submit_request("first"))).JobId
    second = (await client.SubmitHunyuanImageJob(submit_request("second"))).JobId

    await query(client, first)  # "1", then it starts
    second_while_first_runs = [(await query(client, second)).JobStatusCode for _ in range(3)]
    first_states = await states_until_done(client, first)
    second_states = await states_until_done(client, second)

    assert second_while_first_runs == ["1", "1", "1"]
    assert first_states == ["2", "5"]
    assert second_states == ["2", "5"]
    assert tencent_peer.hunyuan.peak_running == 1
    assert tencent_peer.hunyuan.peak_unfinished == 2
    assert tencent_peer.hunyuan.submits == 2


async def test_a_bounded_queue_refuses_submits_with_the_engine_limit_error(
    tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory
) -> None:
    tencent_peer.hunyuan.max_queued = 0
    client = hunyuan()
    first = (await client.SubmitHunyuanImageJob(submit_request("first"))).JobId

    with pytest.raises(TencentCloudSDKException) as refused:
        await client.SubmitHunyuanImageJob(submit_request("second"))
    await states_until_done(client, first)
    accepted = await client.SubmitHunyuanImageJob(submit_request("third"))

    assert refused.value.code == "FailedOperation.EngineServerLimitExceeded"
    assert accepted.JobId
    assert tencent_peer.hunyuan.submits == 2
    assert tencent_peer.hunyuan.peak_unfinished == 1


async def test_accounts_have_their_own_jobs_and_slots(
    tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory
) -> None:
    tencent_peer.credentials["AKID-second-test-account"] = "second-test-key-not-real"
    mine = hunyuan()
    theirs = hunyuan(secret_id="AKID-second-test-account", secret_key="second-test-key-not-real")
    my_job = (await mine.SubmitHunyuanImageJob(submit_request())).JobId
    their_job = (await theirs.SubmitHunyuanImageJob(submit_request())).JobId

    await query(mine, my_job)
    their_states = await states_until_done(theirs, their_job)
    with pytest.raises(TencentCloudSDKException) as foreign:
        await query(theirs, my_job)

    assert their_states == ["1", "2", "5"]
    assert foreign.value.code == "ResourceNotFound"


async def test_manual_mode_moves_jobs_only_when_the_test_says(
    tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory
) -> None:
    tencent_peer.hunyuan.auto = False
    client = hunyuan()
    first = (await client.SubmitHunyuanImageJob(submit_request("first"))).JobId
    second = (await client.SubmitHunyuanImageJob(submit_request("second"))).JobId

    polled = [(await query(client, first)).JobStatusCode for _ in range(3)]
    started = tencent_peer.hunyuan.advance(first)
    with pytest.raises(RuntimeError, match="queued"):
        tencent_peer.hunyuan.advance(second)
    finished = tencent_peer.hunyuan.advance(first)

    assert polled == ["1", "1", "1"]
    assert (started, finished) == ("2", "5")
    assert tencent_peer.hunyuan.job_states() == {first: "5", second: "2"}


async def test_unsafe_prompt_fails_the_job_as_illegal_content(hunyuan: ClientFactory) -> None:
    client = hunyuan()
    job = (await client.SubmitHunyuanImageJob(submit_request("something unsafe"))).JobId

    states = await states_until_done(client, job)
    failed = await query(client, job)

    assert states == ["1", "2", "4"]
    assert failed.JobErrorCode == "OperationDenied.ImageIllegalDetected"
    assert failed.JobErrorMsg
    assert failed.ResultImage == []


async def test_failure_hook_fails_the_next_job_with_the_given_code(
    tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory
) -> None:
    tencent_peer.hunyuan.fail_next_job()
    client = hunyuan()
    failing = (await client.SubmitHunyuanImageJob(submit_request())).JobId
    fine = (await client.SubmitHunyuanImageJob(submit_request())).JobId

    await states_until_done(client, failing)
    await states_until_done(client, fine)

    assert (await query(client, failing)).JobErrorCode == "FailedOperation.GenerateImageFailed"
    assert (await query(client, fine)).JobStatusCode == "5"


async def test_unsafe_content_image_is_refused_at_submit(
    tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory
) -> None:
    with pytest.raises(TencentCloudSDKException) as refused:
        await hunyuan().SubmitHunyuanImageJob(
            submit_request(ContentImage=content_image("https://example.test/unsafe.png"))
        )

    assert refused.value.code == "OperationDenied.ImageIllegalDetected"
    assert tencent_peer.hunyuan.jobs == {}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"Resolution": "1000:1000"}, "InvalidParameterValue.ParameterValueError"),
        ({"Num": 5}, "InvalidParameterValue.ParameterValueError"),
        ({"Clarity": "x3"}, "InvalidParameterValue.ParameterValueError"),
        ({"Prompt": ""}, "InvalidParameterValue.ParameterValueError"),
        ({"Prompt": "长" * 1025}, "InvalidParameterValue.ParameterValueError"),
        # With a content image only four sizes are accepted.
        (
            {"Resolution": "1280:720", "ContentImage": {"ImageUrl": "https://example.test/a.png"}},
            "InvalidParameterValue.ParameterValueError",
        ),
        ({"ContentImage": {"ImageUrl": "ftp://example.test/a.png"}}, "FailedOperation.ImageDownloadError"),
        ({"ContentImage": {}}, "InvalidParameterValue.ParameterValueError"),
    ],
    ids=["resolution", "num", "clarity", "empty-prompt", "long-prompt", "image-size", "image-url", "image-empty"],
)
async def test_parameters_are_checked(
    tencent_peer: ServedTencentCloudPeer, fields: dict[str, Any], expected: str | None
) -> None:
    params = {"Prompt": "a cat", **fields}

    answer = await raw_post(tencent_peer, params)

    assert error_code(answer) == expected
    assert tencent_peer.hunyuan.submits == 0


async def test_missing_prompt_and_job_id_are_missing_parameters(tencent_peer: ServedTencentCloudPeer) -> None:
    no_prompt = await raw_post(tencent_peer, {"Style": "201"})
    no_job = await raw_post(tencent_peer, {}, action="QueryHunyuanImageJob")
    unknown_job = await raw_post(tencent_peer, {"JobId": "1300000000-nope"}, action="QueryHunyuanImageJob")

    assert error_code(no_prompt) == "MissingParameter"
    assert error_code(no_job) == "MissingParameter"
    assert error_code(unknown_job) == "ResourceNotFound"


# -- TC3 and dispatch ------------------------------------------------------------------------


async def test_scope_must_name_hunyuan(tencent_peer: ServedTencentCloudPeer) -> None:
    answer = await raw_post(tencent_peer, {"Prompt": "a cat"}, service="sms")

    assert error_code(answer) == "AuthFailure.SignatureFailure"
    assert tencent_peer.hunyuan.submits == 0


async def test_wrong_key_is_a_signature_failure(tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory) -> None:
    with pytest.raises(TencentCloudSDKException) as failure:
        await hunyuan(secret_key="another-fake-key").SubmitHunyuanImageJob(submit_request())

    assert failure.value.code == "AuthFailure.SignatureFailure"
    assert tencent_peer.hunyuan.submits == 0


async def test_hunyuan_exists_in_guangzhou_only(hunyuan: ClientFactory) -> None:
    with pytest.raises(TencentCloudSDKException) as failure:
        await hunyuan(region="ap-beijing").SubmitHunyuanImageJob(submit_request())

    assert failure.value.code == "UnsupportedRegion"


async def test_version_must_be_2023_09_01(tencent_peer: ServedTencentCloudPeer) -> None:
    answer = await raw_post(tencent_peer, {"Prompt": "a cat"}, version="2021-01-11")

    assert error_code(answer) == "NoSuchVersion"


def test_a_service_host_only_serves_its_own_actions() -> None:
    clock_now = 1_700_000_000.0
    peer = TencentCloudPeer(clock=lambda: clock_now)

    def post(host: str, service: str, action: str, version: str, params: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(params).encode()
        headers = signed_headers_for(
            host=host, body=body, timestamp=int(clock_now), service=service, action=action, version=version
        )
        lower = {name.lower(): value for name, value in headers.items()}
        _, _, answer = peer.handle(method="POST", path="/", query="", headers=lower, body=body)
        result: dict[str, Any] = json.loads(answer)["Response"]
        return result

    on_hunyuan = post(
        "hunyuan.tencentcloudapi.com", "hunyuan", "SubmitHunyuanImageJob", HUNYUAN_VERSION, {"Prompt": "a cat"}
    )
    sms_on_hunyuan = post("hunyuan.tencentcloudapi.com", "hunyuan", "SendSms", "2021-01-11", {})
    hunyuan_on_sms = post("sms.tencentcloudapi.com", "sms", "SubmitHunyuanImageJob", HUNYUAN_VERSION, {})

    assert on_hunyuan["JobId"]
    assert error_code(sms_on_hunyuan) == "InvalidAction"
    assert error_code(hunyuan_on_sms) == "InvalidAction"


# -- fault hooks -----------------------------------------------------------------------------


async def test_a_dropped_answer_still_creates_the_job(
    tencent_peer: ServedTencentCloudPeer, hunyuan: ClientFactory
) -> None:
    tencent_peer.drop_answer_next("SubmitHunyuanImageJob")
    client = hunyuan(timeout=0.5)

    with pytest.raises(httpx.ReadTimeout):
        await client.SubmitHunyuanImageJob(submit_request())
    tencent_peer.release_dropped_answers()
    answered = await hunyuan().SubmitHunyuanImageJob(submit_request())

    assert tencent_peer.answers_dropped == 1
    assert tencent_peer.hunyuan.submits == 2
    assert list(tencent_peer.hunyuan.jobs)[1] == answered.JobId


def test_result_png_is_a_real_image() -> None:
    from tests.peers.tencent_hunyuan import result_png

    image = Image.open(io.BytesIO(result_png()))

    assert (image.format, image.size) == ("PNG", (16, 16))
