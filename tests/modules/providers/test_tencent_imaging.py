"""The Tencent Cloud imaging (aiart) provider against the Tencent Cloud peer over real HTTP, and an
aiart step through the engine: output stored as our object, blocked content refunded once."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import balance, free_port, give_quota, make_feature, run_to_end, step
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import (
    TEST_ACCOUNT_SECRET_ID,
    TEST_ACCOUNT_SECRET_KEY,
    TEST_SECRET_ID,
    TEST_SECRET_KEY,
)
from tests.test_demo_flow import _upload
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, TaskStep
from wardrobe.modules.providers.accounts import Account
from wardrobe.modules.providers.adapters.tencent_imaging import TencentImagingProvider, classify
from wardrobe.modules.providers.base import ProviderError, StepContext, SyncProvider
from wardrobe.modules.storage.backend import LocalObjectStorage, ObjectStorage

CTX = StepContext(task_id="task1", user_id=7, step_id="erase", attempt=1, started_at=datetime(2026, 1, 2, tzinfo=UTC))
ProviderFactory = Callable[..., TencentImagingProvider]


def png(width: int = 64, height: int = 48, *, text: str | None = None) -> bytes:
    info = None
    if text is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", text)
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 160)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


@pytest.fixture
def storage(tmp_path: Path) -> LocalObjectStorage:
    return LocalObjectStorage(tmp_path, "", b"k" * 32)


@pytest.fixture
async def make_provider(tencent_peer: ServedTencentCloudPeer, storage: ObjectStorage) -> AsyncIterator[ProviderFactory]:
    made: list[TencentImagingProvider] = []

    def make(**overrides: Any) -> TencentImagingProvider:
        arguments: dict[str, Any] = {
            "secret_id": TEST_SECRET_ID,
            "secret_key": TEST_SECRET_KEY,
            "storage": storage,
            "endpoint": tencent_peer.host_port,
            "scheme": "http",
            "timeout": 5.0,
            **overrides,
        }
        provider = TencentImagingProvider(**arguments)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def _stored(storage: ObjectStorage, data: bytes, key: str = "uploads/7/2026/01/in.png") -> str:
    await storage.put(key, data, "image/png")
    return key


async def test_erase_sends_base64_and_stores_the_result_as_our_object(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory, storage: ObjectStorage
) -> None:
    image = await _stored(storage, png())
    mask = await _stored(storage, png(), "uploads/7/2026/01/mask.png")
    provider = make_provider(logo_add=False)

    first = await provider.run("erase", {"image": image, "mask": {"object_key": mask}}, CTX)
    again = await provider.run("erase", {"image": image, "mask": mask}, CTX)  # a resumed run

    assert isinstance(provider, SyncProvider)
    assert first["image"] == {"object_key": "results/7/2026/01/task1-erase-1-0.png", "content_type": "image/png"}
    assert again == first
    stored = await storage.get(first["image"]["object_key"])
    assert Image.open(io.BytesIO(stored)).format == "PNG"
    [(action, params)] = tencent_peer.aiart.requests[:1]
    assert action == "ImageInpaintingRemoval"
    assert base64.b64decode(params["InputImage"]) == png()
    assert (params["RspImgType"], params["LogoAdd"]) == ("base64", 0)
    assert "InputUrl" not in params  # our storage is never exposed for base64 actions


async def test_url_results_go_through_the_outputs_sink(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory, storage: ObjectStorage
) -> None:
    received: list[list[dict[str, Any]]] = []

    async def sink(files: list[dict[str, Any]], ctx: StepContext) -> dict[str, Any]:
        received.append(files)
        async with httpx.AsyncClient(timeout=5) as http:
            fetched = await http.get(files[0]["fileUrl"])
        return {"image": {"fetched": fetched.status_code, "type": fetched.headers["content-type"]}}

    provider = make_provider(response_type="url", outputs=sink)

    out = await provider.run("refine", {"image": await _stored(storage, png())}, CTX)

    assert out == {"image": {"fetched": 200, "type": "image/png"}}
    assert received[0][0]["fileUrl"].startswith(f"http://{tencent_peer.host_port}/aiart/results/")


async def test_url_only_actions_need_input_urls(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory, storage: ObjectStorage
) -> None:
    without = make_provider()
    with_urls = make_provider(input_url=lambda key: f"https://files.example.test/{key}?sig=x")
    person = await _stored(storage, png())
    garment = await _stored(storage, png(), "uploads/7/2026/01/garment.png")

    out = await with_urls.run("outfit_change", {"person": person, "garment": garment, "clothes_type": "Dress"}, CTX)

    assert [without.supports(a) for a in ("erase", "outfit_change", "replace_background")] == [True, False, False]
    assert with_urls.supports("replace_background")
    assert out["image"]["object_key"].endswith(".png")
    [(action, params)] = tencent_peer.aiart.requests
    assert action == "ChangeClothes"
    assert params["ModelUrl"] == f"https://files.example.test/{person}?sig=x"
    assert params["ClothesType"] == "Dress"


async def test_unsafe_image_is_content_blocked_and_not_retryable(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory, storage: ObjectStorage
) -> None:
    image = await _stored(storage, png(text="unsafe"))

    with pytest.raises(ProviderError) as blocked:
        await make_provider().run("refine", {"image": image}, CTX)

    assert (blocked.value.code, blocked.value.retryable, blocked.value.broken) == ("content_blocked", False, False)
    assert tencent_peer.aiart.calls["RefineImage"] == 0


async def test_a_full_job_queue_is_retryable_busy(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory, storage: ObjectStorage
) -> None:
    tencent_peer.aiart.limit_jobs_next(1)
    image = await _stored(storage, png())
    provider = make_provider()

    with pytest.raises(ProviderError) as busy:
        await provider.run("refine", {"image": image}, CTX)
    out = await provider.run("refine", {"image": image}, CTX)

    assert (busy.value.code, busy.value.retryable) == ("provider_busy", True)
    assert out["image"]["content_type"] == "image/png"


async def test_bad_credentials_break_the_provider(make_provider: ProviderFactory, storage: ObjectStorage) -> None:
    image = await _stored(storage, png())

    with pytest.raises(ProviderError) as failure:
        await make_provider(secret_key="another-fake-key").run("refine", {"image": image}, CTX)

    assert (failure.value.code, failure.value.retryable, failure.value.broken) == (
        "provider_auth_failed",
        False,
        True,
    )


async def test_a_call_with_an_account_runs_on_the_accounts_credentials_and_endpoint(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory, storage: ObjectStorage
) -> None:
    image = await _stored(storage, png())
    # The provider's own key is unknown to the peer and its endpoint closed: only the account works.
    provider = make_provider(secret_id="AKID-unknown-test-id", endpoint=f"127.0.0.1:{free_port()}")
    account = Account(
        "tencent_imaging",
        "second",
        1,
        secret=TEST_ACCOUNT_SECRET_KEY,
        key_id=TEST_ACCOUNT_SECRET_ID,
        endpoint=tencent_peer.base_url,
    )

    out = await provider.run("refine", {"image": image}, replace(CTX, account=account))
    with pytest.raises(ProviderError) as wrong_secret:
        await provider.run("refine", {"image": image}, replace(CTX, account=replace(account, secret="wrong-key")))

    assert out["image"]["content_type"] == "image/png"
    assert tencent_peer.aiart.calls["RefineImage"] == 1
    assert (wrong_secret.value.code, wrong_secret.value.broken) == ("provider_auth_failed", True)


async def test_a_lost_answer_is_not_retried(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory, storage: ObjectStorage
) -> None:
    tencent_peer.drop_answer_next("RefineImage")
    image = await _stored(storage, png())

    with pytest.raises(ProviderError) as failure:
        await make_provider(timeout=0.5).run("refine", {"image": image}, CTX)

    assert (failure.value.code, failure.value.retryable) == ("submit_unknown", False)
    assert tencent_peer.aiart.calls["RefineImage"] == 1  # it ran (and was billed): a retry pays twice


@pytest.mark.parametrize(
    ("inputs", "why"),
    [
        ({}, "no image"),
        ({"image": "uploads/7/2026/01/missing.png"}, "missing object"),
        ({"image": "uploads/7/2026/01/not-image.png"}, "not an image"),
        ({"image": "uploads/7/2026/01/huge.png"}, "over 5000 px a side"),
    ],
    ids=["none", "missing", "not-image", "huge"],
)
async def test_bad_inputs_fail_before_any_request(
    tencent_peer: ServedTencentCloudPeer,
    make_provider: ProviderFactory,
    storage: ObjectStorage,
    inputs: dict[str, Any],
    why: str,
) -> None:
    await storage.put("uploads/7/2026/01/not-image.png", b"plain text", "image/png")
    await storage.put("uploads/7/2026/01/huge.png", png(5000, 10), "image/png")

    with pytest.raises(ProviderError) as failure:
        await make_provider().run("refine", inputs, CTX)

    assert (failure.value.code, failure.value.retryable) == ("bad_input", False), why
    assert tencent_peer.requests_received == 0


@pytest.mark.parametrize(
    ("vendor_code", "expected"),
    [
        ("RequestLimitExceeded.JobNumExceed", ("provider_busy", True)),
        ("OperationDenied.ImageIllegalDetected", ("content_blocked", False)),
        ("FailedOperation.ImageResolutionExceed", ("bad_input", False)),
        ("FailedOperation.InnerError", ("vendor_unavailable", True)),
        ("ResourcesSoldOut.ChargeStatusException", ("provider_account_unusable", False)),
        ("ResourceUnavailable.InArrears", ("provider_account_unusable", False)),
        ("AuthFailure.UnauthorizedOperation", ("provider_auth_failed", False)),
        ("FailedOperation.GenerateImageFailed", ("vendor_failed", False)),
    ],
)
def test_classify(vendor_code: str, expected: tuple[str, bool]) -> None:
    assert classify(vendor_code) == expected


# -- through the engine ----------------------------------------------------------------------


@pytest.fixture
async def imaging_api(api_factory: Any, tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[Api]:
    api: Api = await api_factory(worker_in_process=True, task_heartbeat_seconds=0.1, task_lease_seconds=5)
    provider = TencentImagingProvider(
        secret_id=TEST_SECRET_ID,
        secret_key=TEST_SECRET_KEY,
        storage=api.infra.storage,
        endpoint=tencent_peer.host_port,
        scheme="http",
        timeout=5.0,
    )
    api.infra.providers.register(provider)  # as app.py will, from settings
    admin = await login_as(api, "admin")
    await make_feature(
        api,
        admin,
        "aiart_refine",
        [step("refine", action="refine", provider="tencent_imaging", inputs={"image": "$inputs.image"})],
        {"image": "$steps.refine.image"},
        form_schema={
            "type": "object",
            "additionalProperties": False,
            "required": ["image"],
            "properties": {"image": {"type": "string", "format": "image-key", "maxLength": 256}},
        },
    )
    yield api
    await provider.aclose()


async def _refine(api: Api, body: bytes) -> tuple[Any, dict[str, Any]]:
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 5)
    image = await _upload(api, user, body)
    created = await api.client.post(
        "/api/v1/tasks", json={"feature": "aiart_refine", "inputs": {"image": image}}, headers=user.headers
    )
    return user, await run_to_end(api, user, str(data(created, 202)["id"]))


async def test_an_aiart_step_succeeds_and_its_output_is_in_our_storage(
    imaging_api: Api, tencent_peer: ServedTencentCloudPeer
) -> None:
    user, task = await _refine(imaging_api, png())

    assert task["status"] == "succeeded", task
    [output] = task["outputs"]
    assert output["url"].startswith(f"/api/v1/storage/objects/results/{user.user['id']}/")
    served = await imaging_api.client.get(output["url"])
    assert served.status_code == 200
    assert Image.open(io.BytesIO(served.content)).format == "PNG"
    assert tencent_peer.aiart.calls["RefineImage"] == 1


async def test_blocked_content_fails_the_task_and_refunds_once(
    imaging_api: Api, tencent_peer: ServedTencentCloudPeer
) -> None:
    user, task = await _refine(imaging_api, png(text="unsafe"))

    assert task["status"] == "failed"
    assert task["refunded"] is True
    async with unit_of_work(imaging_api.infra.session_factory) as db:
        row = (await db.scalars(select(TaskStep).where(TaskStep.step_id == "refine"))).one()
        kinds = sorted(await db.scalars(select(LedgerEntry.kind).where(LedgerEntry.ref == f"task:{task['id']}")))
    assert (row.provider, row.error) == ("tencent_imaging", "content_blocked")
    assert kinds == ["cancel", "reserve"]
    # The sign-up grant and ours, whole again: the one unit held was given back once.
    assert await balance(imaging_api, user.user["id"]) == (15, 0, 15)
    assert tencent_peer.aiart.calls["RefineImage"] == 0
