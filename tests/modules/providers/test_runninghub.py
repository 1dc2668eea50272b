"""RunningHub end to end: the product's adapter, wired from settings, against the local
RunningHub peer over real HTTP, with tasks created through the API and run by the engine.

The peer checks the Bearer key against the body's apiKey, validates nodeInfoList against the
registered workflows, caps tasks per key (421 above it) and serves the output files; the app is
served on a real port so that the peer's webhooks reach it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.realtime import live
from tests.fixtures.tasks import balance, free_port, give_quota, make_feature, run_to_end, step, wait_until
from tests.modules.providers.images import encode, subject_on_background
from tests.modules.providers.servers import canary
from tests.peers.runninghub_fixtures import (
    MODEL_PHOTO_WORKFLOW_ID,
    OUTFIT_CHANGE_WORKFLOW_ID,
    RUNNINGHUB_WORKFLOWS_SETTING,
    ServedRunningHubPeer,
    runninghub_settings,
)
from tests.test_demo_flow import _upload
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, TaskStep, VendorCallback
from wardrobe.modules.providers.adapters.runninghub import UNKNOWN_PREFIX

CAP = 3  # the test key's tasks at once at the peer, and our limit for it


class Rig:
    def __init__(self, api: Api, peer: ServedRunningHubPeer, admin: Session) -> None:
        self.api = api
        self.peer = peer
        self.admin = admin


def served_settings(peer: ServedRunningHubPeer, port: int) -> dict[str, object]:
    """An app that runs its tasks, on the peer, served on ``port`` for the peer's webhooks."""
    return {
        **runninghub_settings(peer),
        "worker_in_process": True,
        "vendor_callback_base_url": f"http://127.0.0.1:{port}",
        # The peer serves its outputs on loopback: the only address SafeFetcher may reach here.
        "vendor_output_allow_private": [peer.base_url.removeprefix("http://")],
        "task_lease_seconds": 10,
        "task_heartbeat_seconds": 0.5,
    }


@pytest.fixture
async def rig(api_factory: Any, runninghub_peer: ServedRunningHubPeer) -> AsyncIterator[Rig]:
    port = free_port()
    api: Api = await api_factory(
        **served_settings(runninghub_peer, port), provider_concurrency={"runninghub": CAP, "local": 2}
    )
    admin = await login_as(api, "admin")
    await outfit_feature(api, admin)
    async with live(api.app, port):
        yield Rig(api, runninghub_peer, admin)


async def outfit_feature(
    api: Api, admin: Session, key: str = "outfit", *, poll_interval_seconds: float = 0.05, timeout_seconds: float = 60
) -> None:
    """The outfit change feature on RunningHub alone (no local fallback), polled briskly."""
    await make_feature(
        api,
        admin,
        key,
        [
            step(
                "change",
                action="outfit_change",
                kind="async_api",
                provider="runninghub",
                inputs={"person": "$inputs.person", "garment": "$inputs.garment"},
                poll_interval_seconds=poll_interval_seconds,
                timeout_seconds=timeout_seconds,
                retries=4,
                backoff_seconds=0.05,
            )
        ],
        {"image": "$steps.change.image"},
        form_schema={
            "type": "object",
            "additionalProperties": False,
            "required": ["person", "garment"],
            "properties": {
                "person": {"type": "string", "format": "image-key", "maxLength": 256},
                "garment": {"type": "string", "format": "image-key", "maxLength": 256},
            },
        },
    )


async def _outfit(rig: Rig, user: Session) -> str:
    return await outfit_task(rig.api, user)


async def outfit_task(api: Api, user: Session, feature: str = "outfit") -> str:
    photo, _ = subject_on_background(160, 120)
    person = await _upload(api, user, encode(photo))
    garment = await _upload(api, user, encode(photo))
    created = await api.client.post(
        "/api/v1/tasks",
        json={"feature": feature, "inputs": {"person": person, "garment": garment}},
        headers=user.headers,
    )
    return str(data(created, 202)["id"])


async def _the_vendor_task(rig: Rig) -> Any:
    """The one RunningHub task the test's task created, once it exists."""

    async def submitted() -> bool:
        return len(rig.peer.tasks_of(rig.peer.api_key)) == 1

    await wait_until(submitted, within=30)
    [vendor_task] = rig.peer.tasks_of(rig.peer.api_key)
    return vendor_task


async def _ledger_kinds(api: Api, public_id: str) -> list[str]:
    async with unit_of_work(api.infra.session_factory) as db:
        rows = await db.scalars(select(LedgerEntry.kind).where(LedgerEntry.ref == f"task:{public_id}"))
        return sorted(rows)


async def test_an_outfit_change_runs_on_runninghub_and_its_output_is_ours(rig: Rig) -> None:
    rig.peer.auto()
    user = await sms_login(rig.api.client)
    public_id = await _outfit(rig, user)
    task = await run_to_end(rig.api, user, public_id, within=60)
    assert task["status"] == "succeeded", task
    [output] = task["outputs"]
    assert output["url"].startswith(f"/api/v1/storage/objects/results/{user.user['id']}/")
    image = await rig.api.client.get(output["url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    [vendor_task] = rig.peer.tasks_of(rig.peer.api_key)
    assert vendor_task.status == "SUCCESS"
    assert rig.peer.creates_by_key[rig.peer.api_key] == 1
    assert await _ledger_kinds(rig.api, public_id) == ["confirm", "reserve"]


async def test_fifty_tasks_never_exceed_the_vendor_cap_and_no_421_reaches_a_user(rig: Rig) -> None:
    rig.peer.auto(queued_s=0.02, running_s=0.05)
    users = [await sms_login(rig.api.client) for _ in range(5)]
    for user in users:
        await give_quota(rig.api, user.user["id"], 10)
    # Created one after another: SQLite has one writer, and 100 parallel uploads (each recorded as
    # a verified upload) would time out on its lock; the 50 tasks still queue up behind the cap.
    ids = [await _outfit(rig, users[i % 5]) for i in range(50)]
    finished = await asyncio.gather(*(run_to_end(rig.api, users[i % 5], pid, within=180) for i, pid in enumerate(ids)))
    assert {t["status"] for t in finished} == {"succeeded"}
    assert rig.peer.peak_in_flight[rig.peer.api_key] <= CAP
    assert rig.peer.refusals_with(421) == []  # our own limit kept us under the vendor's
    assert rig.peer.creates_by_key[rig.peer.api_key] == 50


async def test_421_and_415_back_off_and_succeed_later(rig: Rig) -> None:
    rig.peer.auto()
    rig.peer.fail_next("/task/openapi/create", 421, 2)
    rig.peer.fail_next("/task/openapi/create", 415, 1)
    user = await sms_login(rig.api.client)
    public_id = await _outfit(rig, user)
    task = await run_to_end(rig.api, user, public_id, within=60)
    assert task["status"] == "succeeded", task
    assert len(rig.peer.refusals_with(421)) == 2
    assert len(rig.peer.refusals_with(415)) == 1
    assert rig.peer.creates_by_key[rig.peer.api_key] == 1
    assert await _ledger_kinds(rig.api, public_id) == ["confirm", "reserve"]


async def test_a_lost_create_answer_is_never_repeated_and_the_webhook_finds_the_job(rig: Rig) -> None:
    rig.peer.lose_next_answer()
    user = await sms_login(rig.api.client)
    public_id = await _outfit(rig, user)

    async def created_at_vendor() -> bool:
        return rig.peer.creates_by_key[rig.peer.api_key] == 1

    await wait_until(created_at_vendor, within=30)

    async def waiting_for_a_webhook() -> bool:
        async with unit_of_work(rig.api.infra.session_factory) as db:
            row = await db.scalar(select(TaskStep).where(TaskStep.step_id == "change"))
        return row is not None and (row.vendor_task_id or "").startswith(UNKNOWN_PREFIX)

    await wait_until(waiting_for_a_webhook, within=30)
    [vendor_task] = rig.peer.tasks_of(rig.peer.api_key)
    rig.peer.succeed(vendor_task.task_id)  # its webhook names our step: the job is found
    task = await run_to_end(rig.api, user, public_id, within=60)
    assert task["status"] == "succeeded", task
    assert rig.peer.creates_by_key[rig.peer.api_key] == 1  # never created twice
    assert await _ledger_kinds(rig.api, public_id) == ["confirm", "reserve"]


async def test_duplicate_and_stale_webhooks_end_in_the_right_state_with_outputs_stored_once(rig: Rig) -> None:
    user = await sms_login(rig.api.client)
    public_id = await _outfit(rig, user)

    vendor_task = await _the_vendor_task(rig)
    rig.peer.start(vendor_task.task_id)
    rig.peer.succeed(vendor_task.task_id)
    task = await run_to_end(rig.api, user, public_id, within=60)
    assert task["status"] == "succeeded", task
    before = task["outputs"][0]["url"].split("?")[0]
    for _ in range(3):
        rig.peer.duplicate_webhook(vendor_task.task_id)
    rig.peer.send_stale_webhook(vendor_task.task_id)  # a RUNNING report arriving after the end
    await rig.peer.wait_idle()
    async with unit_of_work(rig.api.infra.session_factory) as db:
        callbacks = await db.scalar(select(func.count()).select_from(VendorCallback))
    assert callbacks == 1  # one vendor event (its TASK_END), however often delivered
    again = data(await rig.api.client.get(f"/api/v1/tasks/{public_id}", headers=user.headers))
    assert again["status"] == "succeeded"
    assert again["outputs"][0]["url"].split("?")[0] == before
    stored = await _objects(rig.api, f"results/{user.user['id']}/")
    assert len(stored) == 1, stored  # one output object, however many deliveries
    assert await _ledger_kinds(rig.api, public_id) == ["confirm", "reserve"]


async def _objects(api: Api, prefix: str) -> list[str]:
    return [info.key for info in await api.infra.storage.list(prefix)]


async def test_a_failed_vendor_task_fails_the_step_and_refunds_once(rig: Rig) -> None:
    user = await sms_login(rig.api.client)
    public_id = await _outfit(rig, user)

    vendor_task = await _the_vendor_task(rig)
    rig.peer.fail(vendor_task.task_id)
    task = await run_to_end(rig.api, user, public_id, within=60)
    assert task["status"] == "failed"
    assert task["refunded"] is True
    assert await _ledger_kinds(rig.api, public_id) == ["cancel", "reserve"]
    assert await balance(rig.api, user.user["id"]) == (10, 0, 10)


async def test_with_runninghub_broken_the_step_falls_back_to_the_local_provider_and_its_circuit_opens(
    api_factory: Any, runninghub_peer: ServedRunningHubPeer
) -> None:
    settings = runninghub_settings(runninghub_peer)
    # A cutout as a RunningHub job (the model-photo workflow stands in for one), with the local
    # CPU provider behind it.
    workflows = {
        **RUNNINGHUB_WORKFLOWS_SETTING,
        "cutout": {
            "kind": "workflow",
            "id": MODEL_PHOTO_WORKFLOW_ID,
            "nodes": {"image": ["10", "image"]},
            "uploads": ["image"],
        },
    }
    api: Api = await api_factory(**{**settings, "runninghub_workflows": workflows}, worker_in_process=True)
    admin = await login_as(api, "admin")
    await make_feature(
        api,
        admin,
        "cutout_rh",
        [
            step(
                "cut",
                action="cutout",
                kind="async_api",
                provider=["runninghub", "local"],
                inputs={"image": "$inputs.image"},
                poll_interval_seconds=0.05,
                timeout_seconds=60,
            )
        ],
        {"image": "$steps.cut.image"},
        form_schema={
            "type": "object",
            "additionalProperties": False,
            "required": ["image"],
            "properties": {"image": {"type": "string", "format": "image-key", "maxLength": 256}},
        },
    )
    runninghub_peer.fail_next("/task/openapi/create", 802, 100)  # the account's key was revoked
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 20)
    photo, _ = subject_on_background(160, 120)
    tried_runninghub = []
    for _ in range(8):
        image = await _upload(api, user, encode(photo))
        before = runninghub_peer.calls["/task/openapi/create"]
        created = await api.client.post(
            "/api/v1/tasks", json={"feature": "cutout_rh", "inputs": {"image": image}}, headers=user.headers
        )
        task = await run_to_end(api, user, str(data(created, 202)["id"]), within=60)
        assert task["status"] == "succeeded", task  # served by the local provider
        tried_runninghub.append(runninghub_peer.calls["/task/openapi/create"] - before)
    assert tried_runninghub[0] == 1  # asked once (a broken key is not retried), then fell back
    assert tried_runninghub[-1] == 0  # the circuit is open: straight to the fallback
    assert runninghub_peer.creates_by_key[runninghub_peer.api_key] == 0
    providers = {p["slug"]: p for p in data(await api.client.get("/api/v1/admin/providers", headers=admin.headers))}
    assert providers["runninghub"]["health"]["state"] == "down"


async def test_an_output_url_pointed_at_an_internal_address_is_never_fetched(rig: Rig) -> None:
    """SSRF: a vendor (or whoever controls its answer) names a loopback listener as the output's
    URL; the task fails with a clear code, is refunded once, and the listener sees no connection."""
    async with canary("127.0.0.1") as listener:
        rig.peer.file_base_url = f"http://{listener.netloc}"
        user = await sms_login(rig.api.client)
        public_id = await _outfit(rig, user)

        vendor_task = await _the_vendor_task(rig)
        rig.peer.succeed(vendor_task.task_id)
        task = await run_to_end(rig.api, user, public_id, within=60)
        assert task["status"] == "failed"
        assert task["refunded"] is True
        assert await listener.confirm_count() == 0
    async with unit_of_work(rig.api.infra.session_factory) as db:
        row = await db.scalar(select(TaskStep).where(TaskStep.step_id == "change"))
    assert row is not None
    assert row.error == "output_forbidden_address"
    assert await _ledger_kinds(rig.api, public_id) == ["cancel", "reserve"]


async def test_the_seeded_vendor_features_run_on_runninghub(
    api_factory: Any, runninghub_peer: ServedRunningHubPeer
) -> None:
    """With RunningHub workflows configured, outfit change and AI model photos are seeded as
    features and run there end to end, as the demo features run locally."""
    api: Api = await api_factory(
        **runninghub_settings(runninghub_peer),
        seed_demo_data=True,
        worker_in_process=True,
        vendor_output_allow_private=[runninghub_peer.base_url.removeprefix("http://")],
    )
    runninghub_peer.auto()
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 20)
    features = {f["key"] for f in data(await api.client.get("/api/v1/features", headers=user.headers))}
    assert {"outfit_change", "model_photo", "cutout"} <= features
    photo, _ = subject_on_background(160, 120)
    runs = {
        "outfit_change": {
            "person": await _upload(api, user, encode(photo)),
            "garment": await _upload(api, user, encode(photo)),
        },
        "model_photo": {
            "prompt": "a model in a linen shirt, studio light",
            "image": await _upload(api, user, encode(photo)),
        },
    }
    for feature, inputs in runs.items():
        created = await api.client.post(
            "/api/v1/tasks", json={"feature": feature, "inputs": inputs}, headers=user.headers
        )
        task = await run_to_end(api, user, str(data(created, 202)["id"]), within=60)
        assert task["status"] == "succeeded", (feature, task)
        assert (await api.client.get(task["outputs"][0]["url"])).status_code == 200
    assert runninghub_peer.creates_by_target[OUTFIT_CHANGE_WORKFLOW_ID] == 1
    assert runninghub_peer.creates_by_target[MODEL_PHOTO_WORKFLOW_ID] == 1


async def test_a_task_canceled_mid_job_cancels_it_at_runninghub_and_refunds_once(rig: Rig) -> None:
    user = await sms_login(rig.api.client)
    public_id = await _outfit(rig, user)

    vendor_task = await _the_vendor_task(rig)
    rig.peer.start(vendor_task.task_id)
    canceled = await rig.api.client.post(f"/api/v1/tasks/{public_id}/cancel", headers=user.headers)
    assert canceled.status_code == 200
    task = await run_to_end(rig.api, user, public_id, within=60)
    assert task["status"] == "canceled"
    assert task["refunded"] is True
    await rig.peer.wait_for(lambda: rig.peer.calls["/task/openapi/cancel"] == 1)
    assert rig.peer.task(vendor_task.task_id).status == "FAILED"  # how RunningHub shows a canceled task
    assert await _ledger_kinds(rig.api, public_id) == ["cancel", "reserve"]


async def _polls_after_a_webhook(rig: Rig, api: Api, runner: Api) -> None:
    """A step polled once a minute (the longest allowed) ends as soon as its webhook comes: the
    callback wakes it. Polled exactly twice: right after the submit, and on the webhook."""
    await outfit_feature(runner, rig.admin, "outfit_slow", poll_interval_seconds=60, timeout_seconds=3600)
    user = await sms_login(runner.client)
    public_id = await outfit_task(runner, user, "outfit_slow")
    vendor_task = await _the_vendor_task(rig)

    async def polled_once() -> bool:
        return rig.peer.calls["/task/openapi/outputs"] == 1

    await wait_until(polled_once, within=30)
    rig.peer.start(vendor_task.task_id)
    rig.peer.succeed(vendor_task.task_id)  # its webhook goes to `api`
    # Well inside the minute the step would otherwise sleep before its next poll.
    task = await run_to_end(runner, user, public_id, within=30)
    assert task["status"] == "succeeded", task
    assert rig.peer.calls["/task/openapi/outputs"] == 2


async def test_a_webhook_wakes_its_polling_step(rig: Rig) -> None:
    await _polls_after_a_webhook(rig, rig.api, rig.api)
    # Woken in the process that received it: no hint went through Redis.
    assert rig.api.infra.runtime.hints.received == 0


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_webhook_received_by_one_process_wakes_the_step_another_polls(
    rig: Rig, api_factory: Any, runninghub_peer: ServedRunningHubPeer
) -> None:
    """The callback lands on the rig's app; the task runs in a second process, woken through Redis."""
    runner: Api = await api_factory(
        **{
            **served_settings(runninghub_peer, free_port()),
            # The vendor calls the rig's app back; `runner` polls.
            "vendor_callback_base_url": rig.api.settings.vendor_callback_base_url,
        }
    )
    # The rig's app only receives the webhook here: its worker stops taking tasks off the queue
    # both share, so the task runs in `runner`, the process that polls, whichever worker is quicker.
    await rig.api.infra.runtime.stop()
    await _polls_after_a_webhook(rig, rig.api, runner)
    assert runner.infra.runtime.hints.received == 1
