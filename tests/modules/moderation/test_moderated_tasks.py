"""Moderation on the task path, end to end through the HTTP API with the Tencent backends on the
peer: a blocked prompt is refused before anything is held; a blocked upload or output fails the
task with content_blocked, refunded once; an outage fails closed; a clean task is unaffected."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import balance, give_quota, make_feature, run_to_end, step
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import TEST_SECRET_ID, TEST_SECRET_KEY
from tests.peers.tencent_moderation import BLOCK_COLOUR, REVIEW_COLOUR, coloured_png
from tests.test_demo_flow import _upload
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, Task, TaskStep
from wardrobe.modules.moderation.factory import build_moderator
from wardrobe.modules.providers.base import StepContext
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.storage.keys import result_key

FEATURE = "moderated_paint"
SHADES = {"block": BLOCK_COLOUR, "review": REVIEW_COLOUR, "clean": (200, 120, 40)}


class PaintProvider:
    """A vendor stand-in whose output is an image in our storage of the colour asked for (the
    peer's IMS decides by colour)."""

    slug = "paint"

    def __init__(self, storage: ObjectStorage) -> None:
        self._storage = storage
        self.calls = 0
        self.keys: list[str] = []

    def supports(self, action: str) -> bool:
        return action == "paint"

    async def run(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        self.calls += 1
        key = result_key(ctx.user_id, f"{ctx.task_id}-{ctx.step_id}", "png")
        await self._storage.put(key, coloured_png(SHADES[str(inputs.get("shade") or "clean")]), "image/png")
        self.keys.append(key)
        return {"image": {"object_key": key, "content_type": "image/png"}}


@pytest.fixture
async def moderated(api_factory: Any, tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[tuple[Api, PaintProvider]]:
    api: Api = await api_factory(worker_in_process=True)  # both backends: this process runs the tasks
    moderator = build_moderator(
        backend="tencent",
        storage=api.infra.storage,
        keywords=[("本地禁词", "Local")],
        secret_id=TEST_SECRET_ID,
        secret_key=TEST_SECRET_KEY,
        endpoint=tencent_peer.host_port,
        scheme="http",
        text_biz_type="wardrobe_text",
        image_biz_type="wardrobe_image",
        outage_backoff_seconds=0.01,
    )
    api.infra.runtime.engine.moderator = moderator  # what the app's wiring does from settings
    paint = PaintProvider(api.infra.storage)
    api.infra.providers.register(paint)
    admin = await login_as(api, "admin")
    await make_feature(
        api,
        admin,
        FEATURE,
        [
            step(
                "paint", action="paint", provider="paint", inputs={"prompt": "$inputs.prompt", "shade": "$inputs.shade"}
            )
        ],
        {"image": "$steps.paint.image"},
        form_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "prompt": {"type": "string", "maxLength": 500},
                "negative_prompt": {"type": "string", "maxLength": 500},
                "shade": {"type": "string", "enum": list(SHADES)},
                "image": {"type": "string", "format": "image-key", "maxLength": 256},
            },
        },
    )
    yield api, paint
    await moderator.aclose()


async def _user(api: Api) -> Session:
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 5)
    return user


async def _create(api: Api, user: Session, **inputs: Any) -> Any:
    return await api.client.post("/api/v1/tasks", json={"feature": FEATURE, "inputs": inputs}, headers=user.headers)


async def _ledger_kinds(api: Api, public_id: str) -> list[str]:
    async with unit_of_work(api.infra.session_factory) as db:
        return sorted(await db.scalars(select(LedgerEntry.kind).where(LedgerEntry.ref == f"task:{public_id}")))


async def _task_rows(api: Api, user: Session) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        return int(await db.scalar(select(func.count()).select_from(Task).where(Task.user_id == user.user["id"])) or 0)


async def test_a_clean_task_is_checked_and_unaffected(
    moderated: tuple[Api, PaintProvider], tencent_peer: ServedTencentCloudPeer
) -> None:
    api, paint = moderated
    user = await _user(api)
    image = await _upload(api, user, coloured_png((10, 200, 10)))

    created = data(await _create(api, user, prompt="一只穿毛衣的猫", image=image, shade="clean"), 202)
    task = await run_to_end(api, user, created["id"])

    assert task["status"] == "succeeded", task
    assert task["error"] is None
    assert await _ledger_kinds(api, created["id"]) == ["confirm", "reserve"]
    assert await balance(api, user.user["id"]) == (14, 0, 14)
    # One prompt, one upload, one output: each checked once.
    assert (tencent_peer.moderation.calls["TextModeration"], tencent_peer.moderation.calls["ImageModeration"]) == (1, 2)
    assert await api.infra.storage.head(paint.keys[0]) is not None


@pytest.mark.parametrize(
    ("prompt", "vendor_calls"),
    [("画一个违禁样本", 1), ("本 地 禁 词", 0), ("ＢＡＤ 本地禁词", 0)],
    ids=["vendor", "keyword", "keyword-full-width"],
)
async def test_a_blocked_prompt_is_refused_before_anything_is_held(
    moderated: tuple[Api, PaintProvider], tencent_peer: ServedTencentCloudPeer, prompt: str, vendor_calls: int
) -> None:
    api, paint = moderated
    user = await _user(api)
    before = await balance(api, user.user["id"])

    refused = await _create(api, user, prompt=prompt)

    assert refused.status_code == 422
    body = refused.json()
    assert (body["success"], body["code"]) == (False, "CONTENT_BLOCKED")
    assert body["data"] == [{"field": "inputs.prompt", "message": "内容不合规"}]
    assert prompt not in refused.text  # the user's words are not echoed
    assert await balance(api, user.user["id"]) == before == (15, 0, 15)
    assert await _task_rows(api, user) == 0
    assert paint.calls == 0
    assert tencent_peer.moderation.calls["TextModeration"] == vendor_calls


async def test_review_passes_a_prompt_and_negative_prompts_are_not_checked(
    moderated: tuple[Api, PaintProvider], tencent_peer: ServedTencentCloudPeer
) -> None:
    api, _ = moderated
    user = await _user(api)

    created = data(await _create(api, user, prompt="待审样本 的猫", negative_prompt="违禁样本"), 202)
    task = await run_to_end(api, user, created["id"])

    assert task["status"] == "succeeded"
    sent = [params for action, params in tencent_peer.moderation.requests if action == "TextModeration"]
    assert len(sent) == 1


async def test_a_prompt_check_outage_answers_503_and_holds_nothing(
    moderated: tuple[Api, PaintProvider], tencent_peer: ServedTencentCloudPeer
) -> None:
    api, _ = moderated
    user = await _user(api)
    tencent_peer.fail_next(1, "InternalError.ErrTextTimeOut")

    refused = await _create(api, user, prompt="一只猫")
    retried = await _create(api, user, prompt="一只猫")

    assert refused.status_code == 503
    assert refused.json()["code"] == "DEPENDENCY_UNAVAILABLE"
    assert refused.headers["Retry-After"] == "5"
    assert retried.status_code == 202  # the vendor is back: the same request goes through
    assert await balance(api, user.user["id"]) == (15, 1, 15)


@pytest.mark.parametrize("shade", ["block", "review"])
async def test_a_blocked_output_fails_the_task_refunded_once_and_is_deleted(
    moderated: tuple[Api, PaintProvider], shade: str
) -> None:
    api, paint = moderated
    user = await _user(api)

    created = data(await _create(api, user, prompt="一只猫", shade=shade), 202)
    task = await run_to_end(api, user, created["id"])

    assert task["status"] == "failed"
    assert task["error"]["code"] == "content_blocked"
    assert task["refunded"] is True
    assert task["outputs"] == []
    assert await _ledger_kinds(api, created["id"]) == ["cancel", "reserve"]
    assert await balance(api, user.user["id"]) == (15, 0, 15)
    assert paint.calls == 1
    assert await api.infra.storage.head(paint.keys[0]) is None  # never exposed, not even by key
    async with unit_of_work(api.infra.session_factory) as db:
        row = (await db.scalars(select(TaskStep).where(TaskStep.step_id == "paint"))).one()
    assert (row.status, row.error) == ("failed", "content_blocked")


async def test_a_blocked_upload_fails_the_task_before_any_vendor_call(
    moderated: tuple[Api, PaintProvider], tencent_peer: ServedTencentCloudPeer
) -> None:
    api, paint = moderated
    user = await _user(api)
    image = await _upload(api, user, coloured_png(BLOCK_COLOUR))

    created = data(await _create(api, user, image=image), 202)
    task = await run_to_end(api, user, created["id"])

    assert (task["status"], task["error"]["code"], task["refunded"]) == ("failed", "content_blocked", True)
    assert await _ledger_kinds(api, created["id"]) == ["cancel", "reserve"]
    assert await balance(api, user.user["id"]) == (15, 0, 15)
    assert paint.calls == 0
    assert await api.infra.storage.head(image) is not None  # the user's upload is theirs: kept


async def test_an_upload_under_review_passes(moderated: tuple[Api, PaintProvider]) -> None:
    api, paint = moderated
    user = await _user(api)
    image = await _upload(api, user, coloured_png(REVIEW_COLOUR))

    task = await run_to_end(api, user, data(await _create(api, user, image=image), 202)["id"])

    assert task["status"] == "succeeded"
    assert paint.calls == 1


async def test_an_output_check_outage_is_retried_then_fails_closed_refunded_once(
    moderated: tuple[Api, PaintProvider], tencent_peer: ServedTencentCloudPeer
) -> None:
    api, paint = moderated
    user = await _user(api)
    tencent_peer.fail_next(2, "InternalError")  # two failed tries, the third answers

    recovered = await run_to_end(api, user, data(await _create(api, user, shade="clean"), 202)["id"])
    tencent_peer.fail_next(3, "RequestLimitExceeded")  # every try fails
    created = data(await _create(api, user, shade="clean"), 202)
    failed = await run_to_end(api, user, created["id"])

    assert recovered["status"] == "succeeded"
    assert (failed["status"], failed["error"]["code"], failed["refunded"]) == ("failed", "moderation_unavailable", True)
    assert await _ledger_kinds(api, created["id"]) == ["cancel", "reserve"]
    assert await balance(api, user.user["id"]) == (14, 0, 14)  # only the recovered task was paid
    assert await api.infra.storage.head(paint.keys[1]) is None  # unchecked: deleted, never exposed
