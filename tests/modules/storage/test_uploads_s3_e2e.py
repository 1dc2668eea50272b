"""Uploads and results end to end on COS-like storage: the app on
the S3 peer; a client sends its bytes straight to the bucket (presigned PUT, or STS keys limited to
its prefix), completes the upload, and a task on the local provider reads it from the bucket and
writes its result there, served by a presigned GET."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from PIL import Image
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import balance, give_quota, make_feature, run_to_end, step
from tests.modules.providers.images import encode, subject_on_background
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.s3_fixtures import S3_CREDENTIALS, S3Peer
from tests.peers.tencent_cloud import TEST_SECRET_ID, TEST_SECRET_KEY
from wardrobe.core.db import unit_of_work
from wardrobe.models import VerifiedUpload
from wardrobe.modules.storage.s3 import S3Credentials
from wardrobe.modules.storage.sts import UPLOAD_ACTIONS

IMAGE_FORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image"],
    "properties": {"image": {"type": "string", "format": "image-key", "maxLength": 256}},
}


async def s3_api(api_factory: Any, peer: S3Peer, **overrides: object) -> Api:
    api: Api = await api_factory(
        storage_backend="s3",
        storage_s3_endpoint_url=peer.endpoint_url,
        storage_s3_region=peer.region,
        storage_s3_bucket=peer.bucket,
        storage_s3_access_key_id=S3_CREDENTIALS.access_key_id,
        storage_s3_secret_access_key=S3_CREDENTIALS.secret_access_key,
        storage_s3_addressing_style="path",
        **overrides,
    )
    return api


def sts_settings(tencent_peer: ServedTencentCloudPeer) -> dict[str, object]:
    return {
        "storage_sts_enabled": True,
        "tencent_secret_id": TEST_SECRET_ID,
        "tencent_secret_key": TEST_SECRET_KEY,
        "storage_sts_endpoint": tencent_peer.host_port,
        "storage_sts_scheme": "http",
    }


async def ask_upload(api: Api, user: Session, size: int, content_type: str = "image/png") -> dict[str, Any]:
    body = {"filename": "in.png", "content_type": content_type, "size": size}
    grant: dict[str, Any] = data(await api.client.post("/api/v1/uploads", json=body, headers=user.headers))
    return grant


async def send_to_bucket(grant: dict[str, Any], body: bytes) -> httpx.Response:
    """The client's own request to the bucket (not through the API)."""
    upload = grant["upload"]
    async with httpx.AsyncClient() as client:
        return await client.request(upload["method"], upload["url"], content=body, headers=upload["headers"])


async def complete(api: Api, user: Session, key: str) -> httpx.Response:
    return await api.client.post("/api/v1/uploads/complete", json={"object_key": key}, headers=user.headers)


def failed(resp: httpx.Response, status: int, code: str) -> Any:
    assert (resp.status_code, resp.json()["code"]) == (status, code), resp.text
    return resp.json()["data"]


async def verified_rows(api: Api) -> list[tuple[str, int]]:
    async with unit_of_work(api.infra.session_factory) as db:
        rows = await db.scalars(select(VerifiedUpload).order_by(VerifiedUpload.id))
        return [(row.object_key, row.user_id) for row in rows]


async def cutout_feature(api: Api) -> None:
    admin = await login_as(api, "admin")
    await make_feature(
        api,
        admin,
        "s3_cutout",
        [step("cut", provider="local", action="cutout", inputs={"image": "$inputs.image"})],
        {"image": "$steps.cut.image"},
        form_schema=IMAGE_FORM,
    )


async def create_task(api: Api, user: Session, key: str) -> httpx.Response:
    return await api.client.post(
        "/api/v1/tasks", json={"feature": "s3_cutout", "inputs": {"image": key}}, headers=user.headers
    )


async def verified_upload(api: Api, user: Session, photo: bytes) -> str:
    """The client's whole upload: grant, bytes to the bucket, completion. Returns the key."""
    grant = await ask_upload(api, user, len(photo))
    assert (await send_to_bucket(grant, photo)).status_code == 200
    data(await complete(api, user, grant["object_key"]))
    return str(grant["object_key"])


async def swap_same_size(api: Api, key: str, photo: bytes) -> None:
    """What a holder of STS keys for the prefix could do: other bytes, the same size."""
    swapped = bytearray(photo)
    swapped[len(photo) // 2] ^= 0xFF
    await api.infra.storage.put(key, bytes(swapped), "image/png")


async def test_presigned_upload_complete_task_and_result_on_the_bucket(api_factory: Any, s3_peer: S3Peer) -> None:
    api = await s3_api(api_factory, s3_peer, worker_in_process=True)
    await cutout_feature(api)
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    photo = encode(subject_on_background(160, 120)[0])

    grant = await ask_upload(api, user, len(photo))
    key = grant["object_key"]
    assert grant["upload"]["url"].startswith(f"{s3_peer.endpoint_url}/{s3_peer.bucket}/{key}?")
    assert "credentials" not in grant["upload"]  # no STS configured: presigned PUT only
    assert (await send_to_bucket(grant, photo)).status_code == 200

    # In the bucket, but not verified: no task may use it yet, and nothing is reserved.
    funds = await balance(api, user.user["id"])
    problems = failed(await create_task(api, user, key), 422, "VALIDATION_FAILED")
    assert [p["field"] for p in problems] == ["inputs.image"]
    assert await balance(api, user.user["id"]) == funds

    stored = data(await complete(api, user, key))
    assert stored == {"object_key": key, "content_type": "image/png", "size": len(photo), "width": 160, "height": 120}
    assert data(await complete(api, user, key)) == stored  # completing twice is fine
    assert await verified_rows(api) == [(key, user.user["id"])]

    s3_peer.requests.clear()
    task = await run_to_end(api, user, data(await create_task(api, user, key), 202)["id"], within=60)
    assert task["status"] == "succeeded", task
    # The task read the upload from the bucket and wrote its result there.
    seen = [(r.method, r.path) for r in s3_peer.requests if r.status is None]
    assert ("GET", f"/{s3_peer.bucket}/{key}") in seen
    [written] = [path for method, path in seen if method == "PUT" and path.startswith(f"/{s3_peer.bucket}/results/")]
    [output] = task["outputs"]
    assert output["url"].startswith(f"{s3_peer.endpoint_url}{written}?")
    assert "X-Amz-Signature=" in output["url"]
    async with httpx.AsyncClient() as client:
        resp = await client.get(output["url"])
        assert resp.status_code == 200
        assert resp.headers["content-type"] == output["content_type"] == "image/png"
        image = Image.open(io.BytesIO(resp.content))
        assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (160, 120))
        # Nothing is public: the same object without the signature is refused.
        assert (await client.get(output["url"].split("?")[0])).status_code == 403


async def test_completion_refuses_and_deletes_what_is_not_the_granted_image(api_factory: Any, s3_peer: S3Peer) -> None:
    api = await s3_api(api_factory, s3_peer)
    user, other = await sms_login(api.client), await sms_login(api.client)
    photo = encode(subject_on_background(48, 32)[0])
    storage = api.infra.storage

    # A presigned PUT cannot bound the size: the bucket takes more than was granted.
    grant = await ask_upload(api, user, len(photo))
    assert (await send_to_bucket(grant, photo + b"\0" * 100)).status_code == 200
    problem = failed(await complete(api, user, grant["object_key"]), 422, "UPLOAD_INVALID")
    assert problem["reason"] == "too_large"
    assert await storage.head(grant["object_key"]) is None

    grant = await ask_upload(api, user, 11)
    assert (await send_to_bucket(grant, b"hello world")).status_code == 200
    assert failed(await complete(api, user, grant["object_key"]), 422, "UPLOAD_INVALID")["reason"] == (
        "unsupported_format"
    )
    assert await storage.head(grant["object_key"]) is None

    jpeg = encode(subject_on_background(48, 32)[0], "JPEG")
    grant = await ask_upload(api, user, len(jpeg))  # declared PNG, sent a JPEG
    assert (await send_to_bucket(grant, jpeg)).status_code == 200
    assert failed(await complete(api, user, grant["object_key"]), 422, "UPLOAD_INVALID")["reason"] == ("type_mismatch")

    never_sent = (await ask_upload(api, user, len(photo)))["object_key"]
    failed(await complete(api, user, never_sent), 404, "NOT_FOUND")

    theirs = await ask_upload(api, other, len(photo))
    assert (await send_to_bucket(theirs, photo)).status_code == 200
    for key in (theirs["object_key"], theirs["object_key"].replace("uploads/", "results/"), "../etc/passwd"):
        assert failed(await complete(api, user, key), 422, "VALIDATION_FAILED") == [
            {"field": "object_key", "message": "应为你本人 uploads/ 下的 object_key"}
        ]
    assert await storage.head(theirs["object_key"]) is not None  # not touched
    failed(await api.client.post("/api/v1/uploads/complete", json={"object_key": never_sent}), 401, "AUTH_REQUIRED")
    assert await verified_rows(api) == []


async def test_sts_credentials_write_only_under_the_users_prefix(
    api_factory: Any, sts_s3_peer: S3Peer, tencent_peer: ServedTencentCloudPeer
) -> None:
    api = await s3_api(api_factory, sts_s3_peer, **sts_settings(tencent_peer))
    user, other = await sms_login(api.client), await sms_login(api.client)
    uid, bucket = user.user["id"], sts_s3_peer.bucket
    before = time.time()
    creds = data(await api.client.post("/api/v1/uploads/credentials", headers=user.headers))
    assert (creds["bucket"], creds["region"], creds["prefix"]) == (bucket, sts_s3_peer.region, f"uploads/{uid}/")
    expires_at = datetime.fromisoformat(creds["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 1800 - 5 <= expires_at <= time.time() + 1800 + 5
    # The policy STS was asked for: the upload actions on this user's prefix, nothing more.
    [issued] = tencent_peer.sts.issued
    assert issued.resources == (f"{bucket}/uploads/{uid}/*",)
    assert issued.actions == {a.removeprefix("name/cos:") for a in UPLOAD_ACTIONS}

    # Cached: the same keys again, and the grant carries them too (api.md's COS STS form).
    assert data(await api.client.post("/api/v1/uploads/credentials", headers=user.headers)) == creds
    photo = encode(subject_on_background(48, 32)[0])
    grant = await ask_upload(api, user, len(photo))
    upload = grant["upload"]
    assert upload["credentials"] == {
        name: creds[name] for name in ("tmp_secret_id", "tmp_secret_key", "session_token", "expires_at")
    }
    assert (upload["bucket"], upload["region"], upload["key"]) == (bucket, creds["region"], grant["object_key"])
    assert upload["method"] == "PUT"  # the presigned PUT is still there
    assert tencent_peer.sts.calls["GetFederationToken"] == 1

    theirs = await ask_upload(api, other, len(photo))
    assert (await send_to_bucket(theirs, photo)).status_code == 200
    temp = S3Credentials(creds["tmp_secret_id"], creds["tmp_secret_key"], creds["session_token"])
    client = sts_s3_peer.client(temp)
    try:
        client.put_object(Bucket=bucket, Key=grant["object_key"], Body=photo, ContentType="image/png")
        mine = f"uploads/{uid}/direct/look.png"
        client.put_object(Bucket=bucket, Key=mine, Body=photo, ContentType="image/png")
        refused: list[Callable[[], object]] = [
            lambda: client.put_object(Bucket=bucket, Key=f"uploads/{other.user['id']}/x.png", Body=photo),
            lambda: client.put_object(Bucket=bucket, Key=f"results/{uid}/x.png", Body=photo),
            lambda: client.put_object(Bucket=bucket, Key=f"uploads/{uid}", Body=photo),
            lambda: client.get_object(Bucket=bucket, Key=theirs["object_key"]),
            lambda: client.get_object(Bucket=bucket, Key=mine),
            lambda: client.delete_object(Bucket=bucket, Key=theirs["object_key"]),
            lambda: client.list_objects_v2(Bucket=bucket, Prefix="uploads/"),
        ]
        for call in refused:
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.response["Error"]["Code"] == "AccessDenied"
        # Multipart uploads are allowed under the prefix.
        part = client.create_multipart_upload(Bucket=bucket, Key=f"uploads/{uid}/big.png", ContentType="image/png")
        etag = client.upload_part(
            Bucket=bucket, Key=f"uploads/{uid}/big.png", UploadId=part["UploadId"], PartNumber=1, Body=photo
        )["ETag"]
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=f"uploads/{uid}/big.png",
            UploadId=part["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
    finally:
        client.close()
    assert await api.infra.storage.head(theirs["object_key"]) is not None

    for key in (grant["object_key"], mine, f"uploads/{uid}/big.png"):
        assert data(await complete(api, user, key))["size"] == len(photo)
    # The other user's keys were never issued: their first request asks STS again.
    other_creds = data(await api.client.post("/api/v1/uploads/credentials", headers=other.headers))
    assert other_creds["prefix"] == f"uploads/{other.user['id']}/"
    assert other_creds["tmp_secret_id"] != creds["tmp_secret_id"]
    assert tencent_peer.sts.calls["GetFederationToken"] == 2


async def test_sts_outages_and_limits(
    api_factory: Any, sts_s3_peer: S3Peer, tencent_peer: ServedTencentCloudPeer
) -> None:
    api = await s3_api(api_factory, sts_s3_peer, upload_rate_limits="2/hour", **sts_settings(tencent_peer))
    user = await sms_login(api.client)
    tencent_peer.fail_next(2, "InternalError.SystemError")
    failed(await api.client.post("/api/v1/uploads/credentials", headers=user.headers), 503, "DEPENDENCY_UNAVAILABLE")
    # The grant still works without them: its presigned PUT does not need STS.
    grant = await ask_upload(api, user, 10)
    assert "credentials" not in grant["upload"]
    assert grant["upload"]["url"].startswith(sts_s3_peer.endpoint_url)
    assert data(await api.client.post("/api/v1/uploads/credentials", headers=user.headers))["prefix"]
    resp = await api.client.post("/api/v1/uploads/credentials", headers=user.headers)
    assert failed(resp, 429, "RATE_LIMITED")["retry_after"] > 0
    failed(await api.client.post("/api/v1/uploads/credentials"), 401, "AUTH_REQUIRED")


@pytest.mark.parametrize("backend_name", ["local", "s3"])
async def test_without_sts_the_credentials_route_says_so(api_factory: Any, s3_peer: S3Peer, backend_name: str) -> None:
    api = await (s3_api(api_factory, s3_peer) if backend_name == "s3" else api_factory())
    user = await sms_login(api.client)
    problem = failed(await api.client.post("/api/v1/uploads/credentials", headers=user.headers), 409, "CONFLICT")
    assert problem["reason"] == "sts_disabled"


async def test_an_object_replaced_after_verification_by_bytes_of_the_same_size_is_refused(
    api_factory: Any, s3_peer: S3Peer
) -> None:
    """Keys that may still write under the user's prefix (STS) could swap the verified bytes for
    others of the same size: the ETag recorded at verification catches it."""
    api = await s3_api(api_factory, s3_peer)
    await cutout_feature(api)
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 2)
    photo = encode(subject_on_background(64, 48)[0])
    key = await verified_upload(api, user, photo)
    head = await api.infra.storage.head(key)
    assert head is not None
    assert head.etag
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(VerifiedUpload.etag).where(VerifiedUpload.object_key == key)) == head.etag

    await swap_same_size(api, key, photo)
    funds = await balance(api, user.user["id"])
    assert failed(await create_task(api, user, key), 422, "VALIDATION_FAILED") == [
        {"field": "inputs.image", "message": "文件在校验后被修改过"}
    ]
    assert await balance(api, user.user["id"]) == funds  # nothing reserved


async def test_an_object_replaced_while_it_is_verified_is_not_recorded(
    api_factory: Any, s3_peer: S3Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await s3_api(api_factory, s3_peer)
    await cutout_feature(api)
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    first, second = encode(subject_on_background(64, 48)[0]), encode(subject_on_background(80, 60)[0])
    grant = await ask_upload(api, user, max(len(first), len(second)))
    key = grant["object_key"]
    assert (await send_to_bucket(grant, first)).status_code == 200
    storage = api.infra.storage
    real_get = storage.get

    async def get_then_overwritten(object_key: str) -> bytes:
        read = await real_get(object_key)
        await storage.put(object_key, second, "image/png")  # a writer lands right after the read
        return read

    monkeypatch.setattr(storage, "get", get_then_overwritten)
    assert failed(await complete(api, user, key), 409, "CONFLICT")["reason"] == "changed_during_verification"
    assert await verified_rows(api) == []  # the bytes read are not the object's any more
    assert (await storage.head(key)) is not None  # and nothing was deleted: it may be fine
    monkeypatch.undo()
    stored = data(await complete(api, user, key))  # completing again checks what is there now
    assert (stored["width"], stored["height"], stored["size"]) == (80, 60, len(second))
    assert data(await create_task(api, user, key), 202)["status"] == "queued"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # one process makes, another runs
async def test_an_upload_replaced_after_the_task_was_made_fails_the_task_refunded(
    api_factory: Any, s3_peer: S3Peer
) -> None:
    """The engine and the vendors read an upload when the task runs, not when it was made: one
    replaced in between (STS keys may still write there) fails the task, refunded once, and is
    never processed."""
    maker = await s3_api(api_factory, s3_peer, worker_in_process=False)  # tasks wait in the queue
    await cutout_feature(maker)
    user = await sms_login(maker.client)
    await give_quota(maker, user.user["id"], 1)
    funds = await balance(maker, user.user["id"])
    photo = encode(subject_on_background(64, 48)[0])
    key = await verified_upload(maker, user, photo)
    task_id = data(await create_task(maker, user, key), 202)["id"]
    await swap_same_size(maker, key, photo)

    s3_peer.requests.clear()
    runner = await s3_api(api_factory, s3_peer, worker_in_process=True)  # picks the queued task up
    task = await run_to_end(runner, user, task_id, within=60)
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "input_changed"
    assert await balance(runner, user.user["id"]) == funds  # the hold was released: refunded once
    assert ("GET", f"/{s3_peer.bucket}/{key}") not in [(r.method, r.path) for r in s3_peer.requests]
