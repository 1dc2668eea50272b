"""Verified uploads on local files: the PUT route records what it verified; tasks take only
their user's verified uploads, and only while the object is the one that was verified. Also the
per-user cache of STS upload credentials."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from tests.conftest import REDIS_URL, Api
from tests.fixtures.auth import data, sms_login
from tests.fixtures.tasks import balance, give_quota
from tests.modules.providers.images import encode, subject_on_background
from tests.modules.storage.test_uploads_s3_e2e import (
    complete,
    create_task,
    cutout_feature,
    failed,
    verified_rows,
)
from tests.peers.fixtures import PeerClock, ServedTencentCloudPeer
from tests.peers.s3_fixtures import S3_BUCKET, S3_REGION
from tests.peers.tencent_cloud import TEST_SECRET_ID, TEST_SECRET_KEY
from tests.test_demo_flow import _upload
from wardrobe.modules.storage import keys
from wardrobe.modules.storage.expiring import ExpiringValues
from wardrobe.modules.storage.sts import MIN_REMAINING_SECONDS, StsUploadCredentials
from wardrobe.settings import Settings


async def test_the_put_route_records_what_it_verified(api_factory: Any) -> None:
    api: Api = await api_factory()
    user = await sms_login(api.client)
    photo = encode(subject_on_background(48, 32)[0])
    key = await _upload(api, user, photo)
    assert await verified_rows(api) == [(key, user.user["id"])]
    # Completing a key the local backend verified already answers what was verified.
    stored = data(await complete(api, user, key))
    assert stored == {"object_key": key, "content_type": "image/png", "size": len(photo), "width": 48, "height": 32}
    assert await verified_rows(api) == [(key, user.user["id"])]
    # A refused PUT records nothing.
    grant = data(
        await api.client.post(
            "/api/v1/uploads",
            json={"filename": "a.png", "content_type": "image/png", "size": 5},
            headers=user.headers,
        )
    )
    upload = grant["upload"]
    resp = await api.client.request("PUT", upload["url"], content=b"hello", headers=upload["headers"])
    failed(resp, 422, "UPLOAD_INVALID")
    assert await verified_rows(api) == [(key, user.user["id"])]


async def test_tasks_take_only_their_users_verified_uploads(api_factory: Any) -> None:
    api: Api = await api_factory()
    await cutout_feature(api)
    user, other = await sms_login(api.client), await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    photo = encode(subject_on_background(48, 32)[0])
    storage = api.infra.storage
    # Put straight into storage, as a bucket would take a presigned PUT: there, not verified.
    unverified = keys.upload_key(user.user["id"], "png")
    await storage.put(unverified, photo, "image/png")
    theirs = await _upload(api, other, photo)
    replaced = await _upload(api, user, photo)
    await storage.put(replaced, photo + b"\0", "image/png")  # overwritten after verification
    funds = await balance(api, user.user["id"])
    for key, message in (
        (unverified, "上传尚未校验：请先上传文件内容，再完成上传"),
        (theirs, "应为你本人上传的文件或生成结果的 key"),
        (replaced, "文件在校验后被修改过"),
    ):
        assert failed(await create_task(api, user, key), 422, "VALIDATION_FAILED") == [
            {"field": "inputs.image", "message": message}
        ]
    assert await balance(api, user.user["id"]) == funds  # nothing reserved
    # Completing the unverified object checks it (the global size bound: no grant) and admits it.
    assert data(await complete(api, user, unverified))["size"] == len(photo)
    assert data(await create_task(api, user, unverified), 202)["status"] == "queued"


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("redis", [False, True])
async def test_credentials_are_cached_per_user_while_five_minutes_remain(
    tencent_peer: ServedTencentCloudPeer, peer_clock: PeerClock, redis: bool
) -> None:
    client = Redis.from_url(REDIS_URL) if redis else None
    clock = _Clock(peer_clock())
    issuer = StsUploadCredentials(
        secret_id=TEST_SECRET_ID,
        secret_key=TEST_SECRET_KEY,
        sts_region=S3_REGION,
        endpoint=tencent_peer.host_port,
        scheme="http",
        timeout=5,
        bucket=S3_BUCKET,
        cos_region=S3_REGION,
        appid="1250000000",
        duration_seconds=900,
        cache=ExpiringValues(client, f"wt-sts-{id(clock)}", clock=clock),
        clock=clock,
    )
    try:
        first = await issuer.for_user(7)
        assert first.expires_at.timestamp() == int(peer_clock()) + 900
        assert await issuer.for_user(7) == first
        assert (await issuer.for_user(8)).prefix == "uploads/8/"
        assert tencent_peer.sts.calls["GetFederationToken"] == 2
        # Just under five minutes left: fresh keys.
        clock.now = first.expires_at.timestamp() - MIN_REMAINING_SECONDS + 1
        second = await issuer.for_user(7)
        assert second.tmp_secret_id != first.tmp_secret_id
        assert tencent_peer.sts.calls["GetFederationToken"] == 3
    finally:
        await issuer.aclose()
        if client is not None:
            await client.delete(*[k async for k in client.scan_iter(match=f"wt-sts-{id(clock)}*")])
            await client.aclose()


def test_sts_settings_need_cos_and_an_appid() -> None:
    cos: dict[str, Any] = {"storage_backend": "s3", "storage_s3_region": S3_REGION, "storage_sts_enabled": True}
    assert Settings(_env_file=None, storage_s3_bucket=S3_BUCKET, **cos).cos_appid == "1250000000"
    named = Settings(_env_file=None, storage_s3_bucket="imgs", storage_sts_appid="1250000001", **cos)
    assert named.cos_appid == "1250000001"
    with pytest.raises(ValidationError, match="STS_APPID"):
        Settings(_env_file=None, storage_s3_bucket="imgs", **cos)
    with pytest.raises(ValidationError, match="STORAGE_BACKEND=s3"):
        Settings(_env_file=None, storage_sts_enabled=True)
    with pytest.raises(ValidationError, match="storage_sts_duration_seconds"):
        Settings(_env_file=None, storage_sts_duration_seconds=3600)
    problems = Settings(_env_file=None, storage_s3_bucket=S3_BUCKET, **cos).production_problems()
    assert any("TENCENT_SECRET_ID" in p for p in problems)
