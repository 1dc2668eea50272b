"""Retention: uploads and results older than WARDROBE_RETENTION_DAYS go, in batches; the tasks stay
and say their files expired; whatever a recent task still uses stays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import give_quota, make_feature, run_to_end, step
from tests.modules.account.erasure_flows import IMAGE_FORM, finished_thumbnail, thumbnail_feature, upload_photo
from tests.modules.storage.samples import noise
from wardrobe.core.db import unit_of_work
from wardrobe.models import Task, VerifiedUpload
from wardrobe.models.base import utcnow
from wardrobe.modules.storage import retention
from wardrobe.worker.scheduler import apply_retention

LONG_AGO = timedelta(days=40)


def _result_key(task: dict[str, Any]) -> str:
    [output] = task["outputs"]
    url = str(output["url"]).split("?", 1)[0]
    return url.split("/storage/objects/", 1)[1] if "/storage/objects/" in url else url.split("/", 4)[4]


async def _age(api: Api, task_ids: list[str], uploads: list[str]) -> None:
    then = utcnow() - LONG_AGO
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(Task).where(Task.public_id.in_(task_ids)).values(finished_at=then))
        await db.execute(update(VerifiedUpload).where(VerifiedUpload.object_key.in_(uploads)).values(verified_at=then))


async def _verified(api: Api) -> set[str]:
    async with unit_of_work(api.infra.session_factory) as db:
        return set(await db.scalars(select(VerifiedUpload.object_key)))


async def _get(api: Api, user: Session, task: dict[str, Any]) -> Any:
    return data(await api.client.get(f"/api/v1/tasks/{task['id']}", headers=user.headers))


@pytest.mark.parametrize("batch", [1, 200])
async def test_old_files_go_recent_and_still_used_ones_stay(
    api_factory: Any, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(retention, "TASK_BATCH", batch)
    monkeypatch.setattr(retention, "UPLOAD_BATCH", batch)
    api: Api = await api_factory(worker_in_process=True)
    admin = await login_as(api, "admin")
    await thumbnail_feature(api, admin)
    user = await sms_login(api.client)
    storage = api.infra.storage
    only_old, shared, unused_old, unused_new = [await upload_photo(api, user, seed) for seed in range(4)]
    old = await finished_thumbnail(api, user, only_old)
    old_shared = await finished_thumbnail(api, user, shared)
    recent = await finished_thumbnail(api, user, shared)
    await _age(api, [old["id"], old_shared["id"]], [only_old, shared, unused_old])

    deleted = await apply_retention(api.infra)
    assert deleted == 4  # two old results, the upload only an old task used, the unused old upload
    for gone in (_result_key(old), _result_key(old_shared), only_old, unused_old):
        assert await storage.head(gone) is None, gone
    for kept in (_result_key(recent), shared, unused_new):
        assert await storage.head(kept) is not None, kept
    assert await _verified(api) == {shared, unused_new}

    for expired in (old, old_shared):
        view = await _get(api, user, expired)
        assert (view["status"], view["outputs"]) == ("succeeded", [])
        assert view["files_purged_at"] is not None
    view = await _get(api, user, recent)
    assert view["files_purged_at"] is None
    assert len(view["outputs"]) == 1
    listed = data(await api.client.get("/api/v1/tasks", headers=user.headers))["items"]
    assert {t["id"]: bool(t["files_purged_at"]) for t in listed} == {
        old["id"]: True,
        old_shared["id"]: True,
        recent["id"]: False,
    }
    assert await apply_retention(api.infra) == 0


async def test_zero_days_keeps_everything(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=True, retention_days=0)
    admin = await login_as(api, "admin")
    await thumbnail_feature(api, admin)
    user = await sms_login(api.client)
    upload = await upload_photo(api, user)
    old = await finished_thumbnail(api, user, upload)
    await _age(api, [old["id"]], [upload])
    assert await apply_retention(api.infra) == 0
    assert await api.infra.storage.head(upload) is not None
    assert (await _get(api, user, old))["files_purged_at"] is None


async def test_retention_on_the_s3_peer(api_factory: Any, s3_peer: Any) -> None:
    from tests.modules.storage.test_uploads_s3_e2e import s3_api, verified_upload

    api = await s3_api(api_factory, s3_peer, worker_in_process=True)
    admin = await login_as(api, "admin")
    await make_feature(
        api,
        admin,
        "s3_thumb",
        [step("small", provider="local", action="thumbnail", inputs={"image": "$inputs.image"})],
        {"image": "$steps.small.image"},
        form_schema=IMAGE_FORM,
    )
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 2)
    used = await verified_upload(api, user, noise(64, 48, seed=1))
    unused = await verified_upload(api, user, noise(64, 48, seed=2))
    created = data(
        await api.client.post(
            "/api/v1/tasks", json={"feature": "s3_thumb", "inputs": {"image": used}}, headers=user.headers
        ),
        202,
    )
    task = await run_to_end(api, user, created["id"], within=60)
    assert task["status"] == "succeeded", task
    await _age(api, [task["id"]], [used, unused])
    client = s3_peer.client()
    before = {o["Key"] for o in client.list_objects_v2(Bucket=s3_peer.bucket)["Contents"]}
    assert len(before) == 3
    assert await apply_retention(api.infra) == 3
    assert client.list_objects_v2(Bucket=s3_peer.bucket).get("Contents", []) == []
    assert (await _get(api, user, task))["outputs"] == []
