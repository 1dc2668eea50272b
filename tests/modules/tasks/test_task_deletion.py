"""An owner deletes a finished task and its files; the task is gone for them, its ledger stays."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.realtime import Listener, live
from tests.fixtures.tasks import give_quota, internal_id, wait_until
from tests.modules.account.erasure_flows import (
    create,
    finished_thumbnail,
    ledger_kinds,
    pending_rows,
    thumbnail_feature,
    upload_photo,
)
from wardrobe.core.db import unit_of_work
from wardrobe.models import Task, TaskStep, VerifiedUpload


def _result_key(task: dict[str, Any]) -> str:
    [output] = task["outputs"]
    return str(output["url"].split("/storage/objects/", 1)[1].split("?", 1)[0])


async def test_deleting_a_finished_task_takes_its_files_and_keeps_its_ledger(files_api: Api) -> None:
    api = files_api
    storage = api.infra.storage
    user = await sms_login(api.client)
    shared, own = await upload_photo(api, user, 1), await upload_photo(api, user, 2)
    first = await finished_thumbnail(api, user, shared)
    second = await finished_thumbnail(api, user, shared)
    third = await finished_thumbnail(api, user, own)
    first_result, third_result = _result_key(first), _result_key(third)

    body = data(await api.client.delete(f"/api/v1/tasks/{first['id']}", headers=user.headers))
    assert body == {"id": first["id"], "files": 1}  # its result; the upload is still the second's
    assert await storage.head(first_result) is None
    assert await storage.head(shared) is not None
    assert await storage.head(_result_key(second)) is not None

    body = data(await api.client.delete(f"/api/v1/tasks/{third['id']}", headers=user.headers))
    assert body == {"id": third["id"], "files": 2}
    assert await storage.head(third_result) is None
    assert await storage.head(own) is None
    assert await pending_rows(api, user.user["id"]) == 0

    # Gone for the owner, everywhere.
    for gone in (first, third):
        resp = await api.client.get(f"/api/v1/tasks/{gone['id']}", headers=user.headers)
        assert (resp.status_code, resp.json()["code"]) == (404, "NOT_FOUND")
        again = await api.client.delete(f"/api/v1/tasks/{gone['id']}", headers=user.headers)
        assert again.status_code == 404
    listed = data(await api.client.get("/api/v1/tasks", headers=user.headers))["items"]
    assert [t["id"] for t in listed] == [second["id"]]
    async with live(api.app) as url:
        listener = Listener()
        await listener.connect(url, user.access)
        try:
            ack = await listener.subscribe(first["id"], second["id"])
        finally:
            await listener.close()
    assert ([t["id"] for t in ack["tasks"]], ack["refused"]) == ([second["id"]], [first["id"]])
    # The money records stay; the content does not.
    assert await ledger_kinds(api, f"task:{first['id']}") == ["confirm", "reserve"]
    async with unit_of_work(api.infra.session_factory) as db:
        row = await db.scalar(select(Task).where(Task.public_id == third["id"]))
        assert row is not None
        assert (row.inputs, row.outputs, row.deleted_at is not None) == ({}, [], True)
        step_outputs = (await db.scalars(select(TaskStep.outputs).where(TaskStep.task_id == row.id))).all()
        assert list(step_outputs) == [{}]
        assert await db.scalar(select(VerifiedUpload.id).where(VerifiedUpload.object_key == own)) is None
    # The deleted upload can no longer be used.
    resp = await api.client.post(
        "/api/v1/tasks", json={"feature": "thumb", "inputs": {"image": own}}, headers=user.headers
    )
    assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED")


async def test_only_the_owner_and_only_a_finished_task(files_api: Api, fault_vendor: Any) -> None:
    api = files_api
    owner, stranger = await sms_login(api.client), await sms_login(api.client)
    done = await finished_thumbnail(api, owner, await upload_photo(api, owner))
    resp = await api.client.delete(f"/api/v1/tasks/{done['id']}", headers=stranger.headers)
    assert (resp.status_code, resp.json()["code"]) == (404, "NOT_FOUND")

    fault_vendor.scenario("fault:d-run", hold=True)
    running = await create(api, owner, "hold", {"key": "d-run"})

    async def at_vendor() -> bool:
        return bool(fault_vendor.in_flight_keys["fault:d-run"] == 1)

    await wait_until(at_vendor)
    queued = await create(api, owner, "hold", {"key": "d-later"})
    for busy in (running, queued):
        resp = await api.client.delete(f"/api/v1/tasks/{busy['id']}", headers=owner.headers)
        assert (resp.status_code, resp.json()["code"]) == (409, "CONFLICT")
        assert resp.json()["data"] == {"reason": "task_not_finished"}
    fault_vendor.release("fault:d-run")
    assert data(await api.client.get(f"/api/v1/tasks/{done['id']}", headers=owner.headers))["id"] == done["id"]


async def test_concurrent_deletes_delete_once_and_the_idempotency_key_is_free_again(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=True)
    admin = await login_as(api, "admin")
    await thumbnail_feature(api, admin)
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 5)
    upload = await upload_photo(api, user)
    created = await create(api, user, "thumb", {"image": upload}, idem="same-key-1")
    await api.infra.runtime.wait_finished(await internal_id(api, created["id"]), 60)
    results = await asyncio.gather(
        *(api.client.delete(f"/api/v1/tasks/{created['id']}", headers=user.headers) for _ in range(3))
    )
    assert sorted(r.status_code for r in results) == [200, 404, 404]
    assert await ledger_kinds(api, f"task:{created['id']}") == ["confirm", "reserve"]
    # The key names no task any more: using it again creates one (its upload went with the task).
    replay = await create(api, user, "thumb", {"image": await upload_photo(api, user, 3)}, idem="same-key-1")
    assert replay["id"] != created["id"]
