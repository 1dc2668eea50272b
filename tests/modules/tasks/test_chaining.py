"""Follow-up tasks: a result names its object key, and its owner may feed it to the next task, as
an upload — never someone else's result, nor one that was deleted (before the task was created, or
after it was created but before it ran)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Api
from tests.fixtures.auth import data, sms_login
from tests.fixtures.tasks import balance, give_quota, run_to_end, wait_until
from tests.modules.account.erasure_flows import (
    create,
    finished_thumbnail,
    ledger_kinds,
    upload_photo,
)


def _key(task: dict[str, Any]) -> str:
    [output] = task["outputs"]
    return str(output["key"])


async def _refused(api: Api, user: Any, key: str) -> list[dict[str, str]]:
    resp = await api.client.post(
        "/api/v1/tasks", json={"feature": "thumb", "inputs": {"image": key}}, headers=user.headers
    )
    body = resp.json()
    assert (resp.status_code, body["code"]) == (422, "VALIDATION_FAILED"), body
    return list(body["data"])


async def test_a_result_feeds_the_next_task_of_its_owner(files_api: Api) -> None:
    api = files_api
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 5)
    first = await finished_thumbnail(api, user, await upload_photo(api, user))
    key = _key(first)
    assert key.startswith(f"results/{user.user['id']}/")
    assert f"/{key}?" in first["outputs"][0]["url"]  # the key is the object the URL signs
    listed = data(await api.client.get("/api/v1/tasks", headers=user.headers))["items"]
    assert [o["key"] for t in listed if t["id"] == first["id"] for o in t["outputs"]] == [key]

    second = await create(api, user, "thumb", {"image": key})
    done = await run_to_end(api, user, second["id"], within=60)
    assert done["status"] == "succeeded", done
    assert _key(done) != key
    assert await api.infra.storage.head(_key(done)) is not None
    assert await api.infra.storage.head(key) is not None  # the first result is not consumed
    # A third link: the second's result, in turn.
    third = await run_to_end(api, user, (await create(api, user, "thumb", {"image": _key(done)}))["id"], within=60)
    assert third["status"] == "succeeded", third
    assert await ledger_kinds(api, f"task:{second['id']}") == ["confirm", "reserve"]


async def test_someone_elses_result_is_refused_and_holds_nothing(files_api: Api) -> None:
    api = files_api
    owner, other = await sms_login(api.client), await sms_login(api.client)
    await give_quota(api, other.user["id"], 5)
    key = _key(await finished_thumbnail(api, owner, await upload_photo(api, owner)))
    before = await balance(api, other.user["id"])
    [problem] = await _refused(api, other, key)
    assert problem["field"] == "inputs.image"
    # Copied under the caller's own id, it names no result of theirs either.
    forged = key.replace(f"results/{owner.user['id']}/", f"results/{other.user['id']}/", 1)
    assert (await _refused(api, other, forged))[0]["field"] == "inputs.image"
    assert await balance(api, other.user["id"]) == before


async def test_a_result_that_is_not_one_of_a_live_task_is_refused(files_api: Api) -> None:
    api = files_api
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 5)
    start = await balance(api, user.user["id"])
    done = await finished_thumbnail(api, user, await upload_photo(api, user, 1))
    key = _key(done)
    uid = user.user["id"]
    # A well-formed key under the user's prefix that no task of theirs produced.
    invented = f"results/{uid}/2026/11/{uuid.uuid4().hex}-small-1-0.png"
    await api.infra.storage.put(invented, b"not really", "image/png")
    assert (await _refused(api, user, invented))[0]["field"] == "inputs.image"
    assert (await _refused(api, user, f"tmp/2026/11/01/{uuid.uuid4().hex}.png"))[0]["field"] == "inputs.image"

    # Deleted with its task: refused, with the other problems of the same request.
    resp = await api.client.delete(f"/api/v1/tasks/{done['id']}", headers=user.headers)
    assert resp.status_code == 200
    [problem] = await _refused(api, user, key)
    assert problem == {"field": "inputs.image", "message": "没有该 key 对应的结果（已删除或已过期）"}
    assert await balance(api, uid) == (start[0] - 1, 0, start[2] - 1)  # one task charged; the refused held nothing


async def test_a_result_deleted_before_the_task_runs_fails_it_refunded(files_api: Api, fault_vendor: Any) -> None:
    api = files_api
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 5)
    source = await finished_thumbnail(api, user, await upload_photo(api, user, 2))
    # One task at a time for this user: a held task keeps the chained one queued.
    fault_vendor.scenario("fault:c-hold", hold=True)
    holding = await create(api, user, "hold", {"key": "c-hold"})

    async def running() -> bool:
        task = data(await api.client.get(f"/api/v1/tasks/{holding['id']}", headers=user.headers))
        return bool(task["status"] == "running")

    await wait_until(running)
    chained = await create(api, user, "thumb", {"image": _key(source)})
    assert data(await api.client.get(f"/api/v1/tasks/{chained['id']}", headers=user.headers))["status"] == "queued"
    resp = await api.client.delete(f"/api/v1/tasks/{source['id']}", headers=user.headers)
    assert resp.status_code == 200
    fault_vendor.release("fault:c-hold")

    ended = await run_to_end(api, user, chained["id"], within=60)
    assert (ended["status"], ended["error"]["code"], ended["refunded"]) == ("failed", "input_deleted", True)
    assert [s["status"] for s in ended["steps"]] == ["pending"]  # nothing ran on the missing input
    assert await ledger_kinds(api, f"task:{chained['id']}") == ["cancel", "reserve"]
