"""The Hunyuan provider against the Tencent Cloud peer over real HTTP: submit and poll, and every
class of failure mapped to our stable codes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import make_feature, run_to_end
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import (
    TEST_ACCOUNT_SECRET_ID,
    TEST_ACCOUNT_SECRET_KEY,
    TEST_SECRET_ID,
    TEST_SECRET_KEY,
)
from wardrobe.core.db import unit_of_work
from wardrobe.models import TaskStep
from wardrobe.modules.providers.accounts import Account
from wardrobe.modules.providers.adapters.hunyuan import PROVIDER_BROKEN_CODES, HunyuanProvider, classify
from wardrobe.modules.providers.base import AsyncProvider, JobState, JobStatus, ProviderError, StepContext

CTX = StepContext(task_id="task-1", user_id=7, step_id="generate", attempt=1)
ProviderFactory = Callable[..., HunyuanProvider]


@pytest.fixture
async def make_provider(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[ProviderFactory]:
    providers: list[HunyuanProvider] = []

    def make(**overrides: Any) -> HunyuanProvider:
        arguments: dict[str, Any] = {
            "secret_id": TEST_SECRET_ID,
            "secret_key": TEST_SECRET_KEY,
            "endpoint": tencent_peer.host_port,
            "scheme": "http",
            "timeout": 5.0,
            **overrides,
        }
        provider = HunyuanProvider(**arguments)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.aclose()


async def poll_to_end(
    provider: HunyuanProvider, job_id: str, limit: int = 10, ctx: StepContext = CTX
) -> tuple[JobStatus, int]:
    """Poll until the job ends; returns the final status and how many polls said running."""
    for running in range(limit):
        status = await provider.poll(job_id, ctx)
        if status.state is not JobState.RUNNING:
            return status, running
    raise AssertionError("the job never ended")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- success ---------------------------------------------------------------------------------


async def test_text_to_image_submits_polls_and_returns_image_urls(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    provider = make_provider(logo_add=False)
    inputs = {
        "prompt": "一条红色连衣裙，白色背景",
        "negative_prompt": "模糊",
        "style": 201,
        "resolution": "768x1024",
        "seed": 42,
        "num": 2,
        "revise": 0,
    }

    job_id = await provider.submit("text_to_image", inputs, CTX)
    status, running_polls = await poll_to_end(provider, job_id)

    assert isinstance(provider, AsyncProvider)
    assert status.state is JobState.SUCCEEDED
    assert running_polls == 2  # "1" then "2"
    assert status.outputs["revised_prompt"] == inputs["prompt"]
    assert len(status.outputs["images"]) == 2
    async with httpx.AsyncClient(timeout=5) as http:
        image = await http.get(status.outputs["images"][0])
    assert (image.status_code, image.headers["content-type"]) == (200, "image/png")
    sent = tencent_peer.hunyuan.jobs[job_id].params
    assert sent == {
        "Prompt": inputs["prompt"],
        "NegativePrompt": "模糊",
        "Style": "201",
        "Resolution": "768:1024",
        "Seed": 42,
        "Num": 2,
        "Revise": 0,
        "LogoAdd": 0,
    }


async def test_image_to_image_sends_the_content_image(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    inputs = {"prompt": "同款换成蓝色", "content_image_url": "https://example.test/dress.png"}

    job_id = await provider.submit("image_to_image", inputs, CTX)
    status, _ = await poll_to_end(provider, job_id)

    assert status.state is JobState.SUCCEEDED
    assert tencent_peer.hunyuan.jobs[job_id].params["ContentImage"] == {"ImageUrl": "https://example.test/dress.png"}
    # Unset inputs are not sent at all (the vendor's defaults apply).
    assert "Seed" not in tencent_peer.hunyuan.jobs[job_id].params


def test_supports_its_two_actions_only(make_provider: ProviderFactory) -> None:
    provider = make_provider()

    assert [provider.supports(a) for a in ("text_to_image", "image_to_image", "cutout")] == [True, True, False]


@pytest.mark.parametrize(
    ("action", "inputs"),
    [
        ("text_to_image", {}),
        ("text_to_image", {"prompt": "   "}),
        ("text_to_image", {"prompt": "x" * 1025}),
        ("text_to_image", {"prompt": "a cat", "num": 5}),
        ("text_to_image", {"prompt": "a cat", "seed": -1}),
        ("text_to_image", {"prompt": "a cat", "resolution": "large"}),
        ("image_to_image", {"prompt": "a cat"}),
        ("image_to_image", {"prompt": "a cat", "content_image_url": "file:///etc/passwd"}),
    ],
    ids=["no-prompt", "blank", "long", "num", "seed", "resolution", "no-image", "image-scheme"],
)
async def test_bad_inputs_fail_before_any_request(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory, action: str, inputs: dict[str, Any]
) -> None:
    with pytest.raises(ProviderError) as failure:
        await make_provider().submit(action, inputs, CTX)

    assert (failure.value.code, failure.value.retryable) == ("bad_input", False)
    assert tencent_peer.requests_received == 0


# -- failures --------------------------------------------------------------------------------


async def test_illegal_content_is_content_blocked(make_provider: ProviderFactory) -> None:
    provider = make_provider()

    job_id = await provider.submit("text_to_image", {"prompt": "an unsafe picture"}, CTX)
    status, _ = await poll_to_end(provider, job_id)

    assert status == JobStatus(JobState.FAILED, error_code="content_blocked")


async def test_illegal_content_image_is_content_blocked_at_submit(make_provider: ProviderFactory) -> None:
    inputs = {"prompt": "a cat", "content_image_url": "https://example.test/unsafe.png"}

    with pytest.raises(ProviderError) as failure:
        await make_provider().submit("image_to_image", inputs, CTX)

    assert (failure.value.code, failure.value.retryable) == ("content_blocked", False)


async def test_generation_failure_is_vendor_failed(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    tencent_peer.hunyuan.fail_next_job("FailedOperation.GenerateImageFailed")
    provider = make_provider()

    job_id = await provider.submit("text_to_image", {"prompt": "a cat"}, CTX)
    status, _ = await poll_to_end(provider, job_id)

    assert status == JobStatus(JobState.FAILED, error_code="vendor_failed")


async def test_a_failed_job_without_a_code_is_vendor_failed(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    tencent_peer.hunyuan.fail_next_job("FailedOperation.EngineServerError")
    provider = make_provider()

    job_id = await provider.submit("text_to_image", {"prompt": "a cat"}, CTX)
    status, _ = await poll_to_end(provider, job_id)

    # A job that failed inside the engine is over; the engine does not poll it again.
    assert status == JobStatus(JobState.FAILED, error_code="vendor_unavailable")


async def test_concurrency_limit_is_retryable_provider_busy(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    tencent_peer.hunyuan.max_queued = 0
    provider = make_provider()
    await provider.submit("text_to_image", {"prompt": "first"}, CTX)

    with pytest.raises(ProviderError) as failure:
        await provider.submit("text_to_image", {"prompt": "second"}, CTX)

    assert (failure.value.code, failure.value.retryable) == ("provider_busy", True)
    assert tencent_peer.hunyuan.submits == 1


@pytest.mark.parametrize(
    ("vendor_code", "code", "retryable"),
    [
        ("RequestLimitExceeded", "provider_busy", True),
        ("RequestLimitExceeded.UinLimitExceeded", "provider_busy", True),
        ("InternalError", "vendor_unavailable", True),
        ("FailedOperation.EngineRequestTimeout", "vendor_unavailable", True),
        ("ResourceInsufficient.ChargeResourceExhaust", "provider_account_unusable", False),
        ("ResourceUnavailable.LowBalance", "provider_account_unusable", False),
        ("FailedOperation.ResourcePackExhausted", "provider_account_unusable", False),
        ("AuthFailure.SecretIdNotFound", "provider_auth_failed", False),
        ("InvalidParameterValue.ParameterValueError", "bad_input", False),
        ("FailedOperation.SomethingNew", "vendor_failed", False),
    ],
)
async def test_submit_errors_are_classified(
    tencent_peer: ServedTencentCloudPeer,
    make_provider: ProviderFactory,
    vendor_code: str,
    code: str,
    retryable: bool,
) -> None:
    tencent_peer.fail_next(1, vendor_code)

    with pytest.raises(ProviderError) as failure:
        await make_provider().submit("text_to_image", {"prompt": "a cat"}, CTX)

    assert (failure.value.code, failure.value.retryable) == (code, retryable)
    assert (code in PROVIDER_BROKEN_CODES) == (code.startswith("provider_") and not retryable)
    assert "retry" not in str(failure.value)  # the peer's message text is not carried along
    assert tencent_peer.hunyuan.submits == 0


async def test_bad_credentials_are_an_auth_failure_of_the_provider(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    with pytest.raises(ProviderError) as wrong_key:
        await make_provider(secret_key="another-fake-key").submit("text_to_image", {"prompt": "a cat"}, CTX)
    with pytest.raises(ProviderError) as unknown_id:
        await make_provider(secret_id="AKID-unknown-test-id").poll("1300000000-x", CTX)

    assert (wrong_key.value.code, wrong_key.value.retryable, wrong_key.value.broken) == (
        "provider_auth_failed",
        False,
        True,
    )
    assert (unknown_id.value.code, unknown_id.value.retryable, unknown_id.value.broken) == (
        "provider_auth_failed",
        False,
        True,
    )
    assert "provider_auth_failed" in PROVIDER_BROKEN_CODES


async def test_a_call_with_an_account_runs_on_the_accounts_credentials_and_endpoint(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    # The provider's own key is unknown to the peer and its endpoint closed: only the account works.
    provider = make_provider(secret_id="AKID-unknown-test-id", endpoint=f"127.0.0.1:{closed_port()}")
    account = Account(
        "hunyuan",
        "second",
        1,
        secret=TEST_ACCOUNT_SECRET_KEY,
        key_id=TEST_ACCOUNT_SECRET_ID,
        endpoint=tencent_peer.base_url,
        options={"region": "ap-guangzhou"},
    )
    ctx = replace(CTX, account=account)

    job_id = await provider.submit("text_to_image", {"prompt": "a cat"}, ctx)
    status, _ = await poll_to_end(provider, job_id, ctx=ctx)
    # The operator edits the account: the next call signs with the new secret, which is wrong.
    with pytest.raises(ProviderError) as wrong_secret:
        await provider.poll(job_id, replace(ctx, account=replace(account, secret="not-the-account-key")))
    with pytest.raises(ProviderError) as no_key_id:
        await provider.submit("text_to_image", {"prompt": "a cat"}, replace(ctx, account=replace(account, key_id=None)))

    assert status.state is JobState.SUCCEEDED
    assert tencent_peer.hunyuan.jobs[job_id].account == TEST_ACCOUNT_SECRET_ID
    assert (wrong_secret.value.code, wrong_secret.value.broken) == ("provider_auth_failed", True)
    assert (no_key_id.value.code, no_key_id.value.broken) == ("provider_misconfigured", True)
    assert tencent_peer.hunyuan.submits == 1


async def test_wrong_region_is_misconfiguration(make_provider: ProviderFactory) -> None:
    with pytest.raises(ProviderError) as failure:
        await make_provider(region="ap-beijing").submit("text_to_image", {"prompt": "a cat"}, CTX)

    assert (failure.value.code, failure.value.retryable, failure.value.broken) == (
        "provider_misconfigured",
        False,
        True,
    )
    assert "provider_misconfigured" in PROVIDER_BROKEN_CODES


async def test_lost_submit_answer_is_submit_unknown_and_not_retryable(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    tencent_peer.drop_answer_next("SubmitHunyuanImageJob")

    with pytest.raises(ProviderError) as failure:
        await make_provider(timeout=0.5).submit("text_to_image", {"prompt": "a cat"}, CTX)

    assert (failure.value.code, failure.value.retryable) == ("submit_unknown", False)
    # The vendor did start (and bill) a job: repeating the submit would start a second one.
    assert tencent_peer.answers_dropped == 1
    assert tencent_peer.hunyuan.submits == 1


async def test_gateway_error_on_submit_is_submit_unknown(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    tencent_peer.http_error_next(1, 504)

    with pytest.raises(ProviderError) as failure:
        await make_provider().submit("text_to_image", {"prompt": "a cat"}, CTX)

    assert (failure.value.code, failure.value.retryable) == ("submit_unknown", False)


async def test_unreachable_vendor_is_retryable_on_submit(make_provider: ProviderFactory) -> None:
    provider = make_provider(endpoint=f"127.0.0.1:{closed_port()}")

    with pytest.raises(ProviderError) as failure:
        await provider.submit("text_to_image", {"prompt": "a cat"}, CTX)

    # Nothing reached the vendor, so submitting again cannot pay twice.
    assert (failure.value.code, failure.value.retryable) == ("vendor_unavailable", True)


async def test_poll_failures_are_retryable_and_the_job_still_finishes(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    job_id = await provider.submit("text_to_image", {"prompt": "a cat"}, CTX)
    tencent_peer.http_error_next(1, 502)
    tencent_peer.fail_next(1, "InternalError")

    with pytest.raises(ProviderError) as gateway:
        await provider.poll(job_id, CTX)
    with pytest.raises(ProviderError) as internal:
        await provider.poll(job_id, CTX)
    status, _ = await poll_to_end(provider, job_id)

    assert (gateway.value.code, gateway.value.retryable) == ("vendor_unavailable", True)
    assert (internal.value.code, internal.value.retryable) == ("vendor_unavailable", True)
    assert status.state is JobState.SUCCEEDED


async def test_lost_query_answer_is_retryable(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    provider = make_provider(timeout=0.5)
    job_id = await provider.submit("text_to_image", {"prompt": "a cat"}, CTX)
    tencent_peer.drop_answer_next("QueryHunyuanImageJob")

    with pytest.raises(ProviderError) as failure:
        await provider.poll(job_id, CTX)

    assert (failure.value.code, failure.value.retryable) == ("vendor_unavailable", True)


async def test_unknown_job_is_lost(make_provider: ProviderFactory) -> None:
    with pytest.raises(ProviderError) as failure:
        await make_provider().poll("1300000000-never-submitted", CTX)

    assert (failure.value.code, failure.value.retryable) == ("vendor_job_lost", False)


@pytest.mark.parametrize(
    ("vendor_code", "expected"),
    [
        ("OperationDenied.TextIllegalDetected", ("content_blocked", False)),
        ("FailedOperation.EngineServerLimitExceeded", ("provider_busy", True)),
        ("LimitExceeded", ("provider_busy", True)),
        ("InternalError.Timeout", ("vendor_unavailable", True)),
        ("UnauthorizedOperation.NoPermission", ("provider_auth_failed", False)),
        ("ResourceUnavailable.InArrears", ("provider_account_unusable", False)),
        ("FailedOperation.ServiceNotActivated", ("provider_account_unusable", False)),
        ("MissingParameter", ("bad_input", False)),
        ("FailedOperation.ImageDownloadError", ("bad_input", False)),
        ("", ("vendor_failed", False)),
    ],
)
def test_classify(vendor_code: str, expected: tuple[str, bool]) -> None:
    assert classify(vendor_code) == expected


# -- through the engine ----------------------------------------------------------------------


@pytest.fixture
async def hunyuan_api(api_factory: Any, tencent_peer: ServedTencentCloudPeer, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("WARDROBE_TEST_HUNYUAN_ENDPOINT", tencent_peer.host_port)
    api: Api = await api_factory(
        extra_providers=["tests.providers.hunyuan:build"],
        provider_concurrency={"hunyuan": 1},
        worker_in_process=True,
        task_heartbeat_seconds=0.1,
        task_lease_seconds=5,
    )
    return api


async def _generate_feature(api: Api, admin: Session) -> None:
    generate = {
        "id": "generate",
        "type": "async_api",
        "action": "text_to_image",
        "provider_candidates": ["hunyuan"],
        "inputs": {"prompt": "$inputs.key"},
        "timeout_seconds": 30,
        "poll_interval_seconds": 0.02,
    }
    await make_feature(api, admin, "hunyuan_t2i", [generate], {"images": "$steps.generate.images"})


async def _create(api: Api, user: Session, prompt: str) -> str:
    created = await api.client.post(
        "/api/v1/tasks", json={"feature": "hunyuan_t2i", "inputs": {"key": prompt}}, headers=user.headers
    )
    public_id: str = data(created, 202)["id"]
    return public_id


async def test_a_pipeline_step_runs_on_hunyuan(hunyuan_api: Api, tencent_peer: ServedTencentCloudPeer) -> None:
    await _generate_feature(hunyuan_api, await login_as(hunyuan_api, "admin"))
    user = await sms_login(hunyuan_api.client)

    task = await run_to_end(hunyuan_api, user, await _create(hunyuan_api, user, "a red dress"))

    assert task["status"] == "succeeded"
    [output] = task["outputs"]
    assert output["name"] == "images"
    assert output["value"][0].startswith(f"http://{tencent_peer.host_port}/hunyuan/results/")
    assert tencent_peer.hunyuan.submits == 1


async def test_illegal_content_fails_the_task_as_content_blocked(
    hunyuan_api: Api, tencent_peer: ServedTencentCloudPeer
) -> None:
    await _generate_feature(hunyuan_api, await login_as(hunyuan_api, "admin"))
    user = await sms_login(hunyuan_api.client)

    task = await run_to_end(hunyuan_api, user, await _create(hunyuan_api, user, "an unsafe picture"))

    assert task["status"] == "failed"
    assert task["refunded"] is True
    async with unit_of_work(hunyuan_api.infra.session_factory) as db:
        row = (await db.scalars(select(TaskStep).where(TaskStep.step_id == "generate"))).one()
    assert (row.provider, row.error) == ("hunyuan", "content_blocked")
    assert tencent_peer.hunyuan.submits == 1  # a refusal is final: no retry, no second job


async def test_two_tasks_never_have_two_jobs_at_the_vendor(
    hunyuan_api: Api, tencent_peer: ServedTencentCloudPeer
) -> None:
    await _generate_feature(hunyuan_api, await login_as(hunyuan_api, "admin"))
    user = await sms_login(hunyuan_api.client)

    first = await _create(hunyuan_api, user, "first dress")
    second = await _create(hunyuan_api, user, "second dress")
    tasks = [await run_to_end(hunyuan_api, user, public_id) for public_id in (first, second)]

    assert [task["status"] for task in tasks] == ["succeeded", "succeeded"]
    assert tencent_peer.hunyuan.submits == 2
    # With our slot limit at the account's concurrency, the second job is only submitted after
    # the first has finished: Tencent never holds two of ours (nor queues one).
    assert tencent_peer.hunyuan.peak_unfinished == 1
