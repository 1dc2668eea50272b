"""Issue "Done means": on the embedded default a newcomer logs in, uploads images, runs every demo
feature, reads the task to `succeeded` and downloads a real result; quota moves as the ledger says."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from tests.conftest import Api
from tests.fixtures.auth import Session, data, sms_login
from tests.fixtures.tasks import balance, run_to_end
from tests.modules.providers.images import cartoon_face, encode, scribbled, subject_on_background


async def _upload(api: Api, user: Session, body: bytes) -> str:
    grant = data(
        await api.client.post(
            "/api/v1/uploads",
            json={"filename": "in.png", "content_type": "image/png", "size": len(body)},
            headers=user.headers,
        )
    )
    upload = grant["upload"]
    resp = await api.client.request(upload["method"], upload["url"], content=body, headers=upload["headers"])
    assert resp.status_code == 201, resp.text
    key: str = grant["object_key"]
    return key


async def _run(api: Api, user: Session, feature: str, inputs: dict[str, Any]) -> dict[str, Any]:
    created = data(
        await api.client.post("/api/v1/tasks", json={"feature": feature, "inputs": inputs}, headers=user.headers), 202
    )
    task = await run_to_end(api, user, created["id"], within=120)
    assert task["status"] == "succeeded", task
    return task


async def _download(api: Api, output: dict[str, Any]) -> Image.Image:
    resp = await api.client.get(output["url"])
    assert resp.status_code == 200
    assert resp.headers["content-type"] == output["content_type"]
    image = Image.open(io.BytesIO(resp.content))
    image.load()
    return image


async def test_a_newcomer_runs_every_demo_feature(api_factory: Any) -> None:
    api: Api = await api_factory(seed_demo_data=True, worker_in_process=True)
    user = await sms_login(api.client)
    features = {f["key"]: f for f in data(await api.client.get("/api/v1/features", headers=user.headers))}
    assert set(features) == {"cutout", "eraser", "outpaint", "face_swap"}
    assert features["cutout"]["form_schema"]["required"] == ["image"]

    photo, _ = subject_on_background(320, 240)
    cut = await _run(api, user, "cutout", {"image": await _upload(api, user, encode(photo))})
    outputs = {o["name"]: o for o in cut["outputs"]}
    assert set(outputs) == {"cutout", "preview", "large"}
    cutout = await _download(api, outputs["cutout"])
    assert cutout.mode == "RGBA"
    alpha = np.asarray(cutout)[:, :, 3]
    assert alpha[120, 160] > 200  # the subject stays
    assert alpha[5, 5] < 50  # the background goes
    assert max((await _download(api, outputs["preview"])).size) <= 256
    assert [s["status"] for s in cut["steps"]] == ["succeeded"] * 3

    _, dirty, mask = scribbled()
    erased = await _run(
        api,
        user,
        "eraser",
        {
            "image": await _upload(api, user, encode(dirty)),
            "mask": await _upload(api, user, encode(np.stack([mask] * 3, -1))),
        },
    )
    assert (await _download(api, erased["outputs"][0])).size == (240, 180)

    wide = await _run(
        api,
        user,
        "outpaint",
        {
            "image": await _upload(api, user, encode(photo)),
            "left": 40,
            "top": 0,
            "right": 40,
            "bottom": 20,
        },
    )
    assert (await _download(api, wide["outputs"][0])).size == (400, 260)

    source = cartoon_face(mouth=(40, 200, 40))
    target = cartoon_face(400, 360, size=180, skin=(200, 160, 130))
    swapped = await _run(
        api,
        user,
        "face_swap",
        {
            "source": await _upload(api, user, encode(source)),
            "target": await _upload(api, user, encode(target)),
        },
    )
    assert (await _download(api, swapped["outputs"][0])).size == (400, 360)

    # 10 granted at sign-up; 1 + 1 + 2 + 3 spent; the ledger agrees with the balance.
    assert await balance(api, user.user["id"]) == (3, 0, 3)
    ledger = data(await api.client.get("/api/v1/billing/ledger", params={"limit": 50}, headers=user.headers))
    kinds = [i["kind"] for i in ledger["items"]]
    assert kinds.count("confirm") == 4
    assert kinds.count("reserve") == 4
