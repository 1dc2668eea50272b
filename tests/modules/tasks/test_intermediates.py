"""A task's intermediates go when it ends: what its steps stored and its outputs do not name."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.fixtures.auth import login_as, sms_login
from tests.fixtures.tasks import give_quota, make_feature, run_to_end, step
from tests.modules.providers.images import encode, subject_on_background
from tests.test_demo_flow import _upload

IMAGE_FORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image"],
    "properties": {"image": {"type": "string", "format": "image-key", "maxLength": 256}},
}


async def _two_steps(api: Api, second_action: str) -> None:
    admin = await login_as(api, "admin")
    await make_feature(
        api,
        admin,
        f"two_{second_action}",
        [
            step("small", provider="local", action="thumbnail", inputs={"image": "$inputs.image"}),
            step("final", provider="local", action=second_action, inputs={"image": "$steps.small.image"}),
        ],
        {"image": "$steps.final.image"},
        form_schema=IMAGE_FORM,
    )


async def test_the_first_steps_image_goes_the_final_one_stays_and_so_does_the_upload(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=True)
    await _two_steps(api, "cutout")
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    photo, _ = subject_on_background(160, 120)
    upload = await _upload(api, user, encode(photo))
    created = await api.client.post(
        "/api/v1/tasks", json={"feature": "two_cutout", "inputs": {"image": upload}}, headers=user.headers
    )
    task = await run_to_end(api, user, created.json()["data"]["id"], within=60)
    assert task["status"] == "succeeded", task
    [output] = task["outputs"]
    storage = api.infra.storage
    results = [info.key for info in await storage.list(f"results/{user.user['id']}/")]
    [kept] = results  # the thumbnail of step one is gone
    assert f"/{kept}?" in output["url"]
    assert await storage.head(upload) is not None  # the user's upload is never an intermediate


async def test_a_failed_task_leaves_nothing_of_its_steps(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=True)
    await _two_steps(api, "face_swap")  # needs a second image it does not get: the step fails
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    photo, _ = subject_on_background(160, 120)
    upload = await _upload(api, user, encode(photo))
    created = await api.client.post(
        "/api/v1/tasks", json={"feature": "two_face_swap", "inputs": {"image": upload}}, headers=user.headers
    )
    task = await run_to_end(api, user, created.json()["data"]["id"], within=60)
    assert task["status"] == "failed", task
    assert [s["status"] for s in task["steps"]] == ["succeeded", "failed"]
    assert await api.infra.storage.list(f"results/{user.user['id']}/") == []
    assert await api.infra.storage.head(upload) is not None
