"""The S3-compatible backend against a local S3 server (moto behind a SigV4 gate,
``tests/peers/s3_fixtures.py``), and the parts of the storage contract both backends share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.fixtures.settings import production_settings
from tests.peers.s3_fixtures import S3_CREDENTIALS, S3_TEMP_CREDENTIALS, S3Peer
from wardrobe.modules.storage.backend import (
    InvalidKey,
    LocalObjectStorage,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStorage,
)
from wardrobe.modules.storage.deps import build_storage, close_storage
from wardrobe.modules.storage.s3 import S3Credentials, S3ObjectStorage
from wardrobe.settings import Settings

KEY = "uploads/7/2026/11/0123456789abcdef0123456789abcdef.png"


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStorage]:
    """Each backend in turn: the contract tests below must hold for both."""
    if request.param == "local":
        yield LocalObjectStorage(tmp_path, "", b"k" * 32)
        return
    peer: S3Peer = request.getfixturevalue("s3_peer")
    s3 = peer.storage()
    try:
        yield s3
    finally:
        await s3.aclose()


# --- the contract, on both backends -----------------------------------------------------------


async def test_put_get_head_delete(storage: ObjectStorage) -> None:
    assert await storage.head(KEY) is None
    with pytest.raises(ObjectNotFound):
        await storage.get(KEY)
    with pytest.raises(KeyError):
        await storage.get(KEY)
    before = datetime.now(UTC) - timedelta(seconds=2)
    await storage.put(KEY, b"abc", "image/png")
    info = await storage.head(KEY)
    assert info is not None
    assert (info.key, info.size, info.content_type) == (KEY, 3, "image/png")
    assert before <= info.created <= datetime.now(UTC) + timedelta(seconds=2)
    assert await storage.get(KEY) == b"abc"
    await storage.put(KEY, b"second", "image/webp")  # overwrite is the default
    info = await storage.head(KEY)
    assert info is not None
    assert (info.size, info.content_type) == (6, "image/webp")
    assert await storage.get(KEY) == b"second"
    assert await storage.delete(KEY) is True
    assert await storage.delete(KEY) is False
    assert await storage.head(KEY) is None


async def test_put_without_overwrite_refuses_a_taken_key(storage: ObjectStorage) -> None:
    await storage.put(KEY, b"first", "image/png", overwrite=False)
    with pytest.raises(ObjectExists):
        await storage.put(KEY, b"second", "image/jpeg", overwrite=False)
    assert await storage.get(KEY) == b"first"
    info = await storage.head(KEY)
    assert info is not None
    assert info.content_type == "image/png"


async def test_list_pages_in_key_order(storage: ObjectStorage) -> None:
    made = ["results/1/x.png", "uploads/1/a.png", "uploads/1/b/c.png", "uploads/10/d.png", "uploads/2/e.png"]
    for key in made:
        await storage.put(key, b"12", "image/png")
    assert [i.key for i in await storage.list("")] == sorted(made)
    assert [i.key for i in await storage.list("uploads/1")] == [
        "uploads/1/a.png",
        "uploads/1/b/c.png",
        "uploads/10/d.png",
    ]
    assert [i.key for i in await storage.list("uploads/1/")] == ["uploads/1/a.png", "uploads/1/b/c.png"]
    page = await storage.list("uploads/", limit=2)
    assert [i.key for i in page] == ["uploads/1/a.png", "uploads/1/b/c.png"]
    page = await storage.list("uploads/", limit=2, start_after=page[-1].key)
    assert [i.key for i in page] == ["uploads/10/d.png", "uploads/2/e.png"]
    assert await storage.list("uploads/", limit=2, start_after=page[-1].key) == []
    assert await storage.list("nothing/") == []
    assert await storage.list("uploads/", limit=0) == []
    assert {(i.size, i.created.tzinfo is not None) for i in await storage.list("")} == {(2, True)}
    with pytest.raises(InvalidKey):
        await storage.list("../")


async def test_delete_many_counts_each_object_once(storage: ObjectStorage) -> None:
    for key in ("uploads/1/a.png", "uploads/1/b.png", "uploads/2/e.png"):
        await storage.put(key, b"x", "image/png")
    assert await storage.delete_many(["uploads/1/a.png", "uploads/1/a.png", "uploads/2/e.png"]) == 2
    assert [i.key for i in await storage.list("uploads/")] == ["uploads/1/b.png"]
    assert await storage.delete_many([]) == 0


@pytest.mark.parametrize("key", ["../outside.png", "/etc/passwd", "uploads/../../outside", ".meta/x", "a//b"])
async def test_every_operation_refuses_bad_keys(storage: ObjectStorage, key: str) -> None:
    with pytest.raises(InvalidKey):
        await storage.get(key)
    with pytest.raises(InvalidKey):
        await storage.head(key)
    with pytest.raises(InvalidKey):
        await storage.put(key, b"x", "image/png")
    with pytest.raises(InvalidKey):
        await storage.delete(key)
    with pytest.raises(InvalidKey):
        await storage.delete_many(["uploads/1/ok.png", key])
    with pytest.raises(InvalidKey):
        storage.upload_target(key, "image/png", 10, 60)
    with pytest.raises(InvalidKey):
        storage.download_url(key, 60)


# --- S3 specifics -----------------------------------------------------------------------------


def test_it_is_an_object_storage(s3_peer: S3Peer) -> None:
    storage: ObjectStorage = s3_peer.storage()
    assert isinstance(storage, S3ObjectStorage)


async def test_delete_many_sends_at_most_1000_keys_per_call(s3_peer: S3Peer, s3_storage: S3ObjectStorage) -> None:
    keys = [f"tmp/batch/{i:04d}.png" for i in range(1001)]
    s3_peer.seed(keys)
    assert await s3_storage.delete_many(keys) == 1001
    calls = [r for r in s3_peer.requests if r.is_delete_objects]
    # Two DeleteObjects as the store saw them, both accepted (a valid Content-MD5 each).
    assert [(r.deleted_keys, r.status) for r in calls] == [(1000, None), (1, None)]
    assert all("x-amz-checksum-crc32" not in r.headers for r in calls)
    assert await s3_storage.list("tmp/") == []


async def test_listing_more_than_a_page_follows_continuation_tokens(
    s3_peer: S3Peer, s3_storage: S3ObjectStorage
) -> None:
    keys = [f"tmp/page/{i:04d}.png" for i in range(1003)]
    s3_peer.seed(keys, b"xy")
    listed = await s3_storage.list("tmp/page/", limit=1002)
    assert [i.key for i in listed] == keys[:1002]
    listings = [r for r in s3_peer.requests if r.method == "GET" and r.query.get("list-type") == "2"]
    assert [r.query.get("max-keys") for r in listings] == ["1000", "2"]
    assert "continuation-token" in listings[1].query
    tail = await s3_storage.list("tmp/page/", start_after=listed[-1].key)
    assert [i.key for i in tail] == keys[1002:]


async def test_the_store_requires_content_md5_on_delete_objects(s3_peer: S3Peer) -> None:
    """What the backend's DeleteObjects hook is for: a stock botocore client sends CRC32 only, and a
    store like COS refuses that (the peer does too)."""
    client = s3_peer.client()
    client.put_object(Bucket=s3_peer.bucket, Key="tmp/a.png", Body=b"x")
    with pytest.raises(ClientError) as info:
        client.delete_objects(Bucket=s3_peer.bucket, Delete={"Objects": [{"Key": "tmp/a.png"}]})
    assert info.value.response["Error"]["Code"] == "InvalidRequest"
    client.close()


async def test_presigned_put_then_get(s3_peer: S3Peer, s3_storage: S3ObjectStorage) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    target = s3_storage.upload_target(KEY, "image/png", 1234, 900)
    assert target.method == "PUT"
    assert target.headers == {"Content-Type": "image/png", "If-None-Match": "*"}
    assert before + timedelta(seconds=900) <= target.expires_at <= datetime.now(UTC) + timedelta(seconds=900)
    assert urlsplit(target.url).path == f"/{s3_peer.bucket}/{KEY}"
    async with httpx.AsyncClient() as http:
        # Content-Type is signed: another one is a different request.
        wrong = await http.put(target.url, content=b"png bytes", headers={"Content-Type": "text/html"})
        assert wrong.status_code == 403
        assert "SignatureDoesNotMatch" in wrong.text
        # So is the key: the URL cannot be bent to another object.
        parts = urlsplit(target.url)
        moved = urlunsplit(parts._replace(path=parts.path.replace("/7/", "/8/")))
        assert (await http.put(moved, content=b"png bytes", headers=target.headers)).status_code == 403
        assert await s3_storage.head(KEY) is None

        put = await http.request(target.method, target.url, content=b"png bytes", headers=target.headers)
        assert put.status_code == 200, put.text
        info = await s3_storage.head(KEY)
        assert info is not None
        assert (info.size, info.content_type) == (9, "image/png")

        got = await http.get(s3_storage.download_url(KEY, 60))
        assert got.status_code == 200
        assert got.content == b"png bytes"
        # Served inline under the key's own name, as the type the key says (a signed override).
        assert got.headers["content-type"] == "image/png"
        name = KEY.rsplit("/", 1)[1]
        assert got.headers["content-disposition"] == f"inline; filename=\"{name}\"; filename*=UTF-8''{name}"

        # Nothing is public: the same object without a signature is refused.
        assert (await http.get(f"{s3_peer.endpoint_url}/{s3_peer.bucket}/{KEY}")).status_code == 403

        # The URL is create-only: while it lives it cannot replace what landed (and was verified),
        # and the condition is signed, so leaving it out is a different request.
        again = await http.request(target.method, target.url, content=b"PNG BYTES", headers=target.headers)
        assert again.status_code == 412, again.text
        unconditional = await http.put(target.url, content=b"PNG BYTES", headers={"Content-Type": "image/png"})
        assert unconditional.status_code == 403
        assert "SignatureDoesNotMatch" in unconditional.text
        assert await s3_storage.get(KEY) == b"png bytes"


async def test_without_conditional_puts_upload_urls_carry_no_condition(s3_peer: S3Peer) -> None:
    storage = s3_peer.storage(conditional_put=False)
    try:
        target = storage.upload_target(KEY, "image/png", 1234, 900)
        assert target.headers == {"Content-Type": "image/png"}
        async with httpx.AsyncClient() as http:
            put = await http.request(target.method, target.url, content=b"png bytes", headers=target.headers)
        assert put.status_code == 200, put.text
    finally:
        await storage.aclose()


async def test_expired_presigned_urls_are_refused(s3_peer: S3Peer, s3_storage: S3ObjectStorage) -> None:
    await s3_storage.put(KEY, b"abc", "image/png")
    download = s3_storage.download_url(KEY, 60)
    upload = s3_storage.upload_target("uploads/7/other.png", "image/png", 10, 60)
    async with httpx.AsyncClient() as http:
        s3_peer.skew = 55  # the store's clock, not a sleep
        assert (await http.get(download)).status_code == 200
        s3_peer.skew = 62
        expired = await http.get(download)
        assert expired.status_code == 403
        assert "Request has expired" in expired.text
        late = await http.put(upload.url, content=b"x", headers=upload.headers)
        assert late.status_code == 403
        assert "Request has expired" in late.text
    assert await s3_storage.head("uploads/7/other.png") is None
    with pytest.raises(ValueError, match="expires_in"):
        s3_storage.download_url(KEY, 8 * 24 * 3600)
    with pytest.raises(ValueError, match="expires_in"):
        s3_storage.upload_target(KEY, "image/png", 10, 0)


async def test_presigned_get_with_a_filename_sets_content_disposition(s3_storage: S3ObjectStorage) -> None:
    await s3_storage.put(KEY, b"abc", "image/png")
    async with httpx.AsyncClient() as http:
        got = await http.get(s3_storage.download_url(KEY, 60, "结果 1.png"))
    assert got.status_code == 200
    assert got.content == b"abc"
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"__ 1.png\"; filename*=UTF-8''%E7%BB%93%E6%9E%9C%201.png"
    )


async def test_create_only_puts_are_conditional(
    s3_peer: S3Peer, s3_storage: S3ObjectStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HEAD is only a shortcut: a writer that lands between our HEAD and our PUT still wins,
    because the PUT carries If-None-Match: * and the store settles it."""
    await s3_storage.put(KEY, b"first", "image/png")

    async def stale_head(key: str) -> ObjectInfo | None:
        return None  # what HEAD said just before the other writer's PUT landed

    monkeypatch.setattr(s3_storage, "head", stale_head)
    s3_peer.requests.clear()
    with pytest.raises(ObjectExists):
        await s3_storage.put(KEY, b"second", "image/png", overwrite=False)
    puts = [r for r in s3_peer.requests if r.method == "PUT"]
    assert [r.headers.get("if-none-match") for r in puts] == ["*"]
    assert not any("x-amz-acl" in r.headers for r in puts)  # no ACL: objects stay private
    monkeypatch.undo()
    assert await s3_storage.get(KEY) == b"first"


async def test_without_conditional_puts_the_head_still_refuses(s3_peer: S3Peer) -> None:
    storage = s3_peer.storage(conditional_put=False)
    try:
        await storage.put(KEY, b"first", "image/png", overwrite=False)
        s3_peer.requests.clear()
        with pytest.raises(ObjectExists):
            await storage.put(KEY, b"second", "image/png", overwrite=False)
        assert [r.method for r in s3_peer.requests] == ["HEAD"]  # refused before sending the body
        assert await storage.get(KEY) == b"first"
        await storage.put("uploads/7/new.png", b"n", "image/png", overwrite=False)
        new_puts = [r for r in s3_peer.requests if r.method == "PUT"]
        assert [r.headers.get("if-none-match") for r in new_puts] == [None]
    finally:
        await storage.aclose()


async def test_temporary_credentials_need_their_session_token(s3_peer: S3Peer) -> None:
    temporary = s3_peer.storage(S3_TEMP_CREDENTIALS)
    tokenless = s3_peer.storage(S3Credentials(S3_TEMP_CREDENTIALS.access_key_id, S3_TEMP_CREDENTIALS.secret_access_key))
    wrong_secret = s3_peer.storage(S3Credentials(S3_CREDENTIALS.access_key_id, "not-the-secret"))
    try:
        await temporary.put(KEY, b"abc", "image/png")
        assert await temporary.get(KEY) == b"abc"
        url = temporary.download_url(KEY, 60)
        assert "X-Amz-Security-Token=" in url
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).status_code == 200
            assert (await http.get(tokenless.download_url(KEY, 60))).status_code == 403
        with pytest.raises(ClientError, match="InvalidToken"):
            await tokenless.get(KEY)
        with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
            await wrong_secret.get(KEY)
    finally:
        for storage in (temporary, tokenless, wrong_secret):
            await storage.aclose()


async def test_one_client_is_opened_lazily_and_closed(s3_storage: S3ObjectStorage) -> None:
    await s3_storage.aclose()  # closing what was never opened is fine
    await asyncio.gather(*(s3_storage.head(f"uploads/7/{i}.png") for i in range(5)))
    client = s3_storage._client
    assert client is not None
    await s3_storage.head(KEY)
    assert s3_storage._client is client  # the same client, not one per call
    await s3_storage.aclose()
    assert s3_storage._client is None
    await s3_storage.put(KEY, b"again", "image/png")  # a later call opens a new one
    assert await s3_storage.get(KEY) == b"again"


async def test_settings_build_the_s3_backend(s3_peer: S3Peer) -> None:
    settings = Settings(
        _env_file=None,
        storage_backend="s3",
        storage_s3_endpoint_url=s3_peer.endpoint_url,
        storage_s3_region=s3_peer.region,
        storage_s3_bucket=s3_peer.bucket,
        storage_s3_access_key_id=S3_TEMP_CREDENTIALS.access_key_id,
        storage_s3_secret_access_key=S3_TEMP_CREDENTIALS.secret_access_key,
        storage_s3_session_token=S3_TEMP_CREDENTIALS.session_token,
        storage_s3_addressing_style="path",
    )
    storage = build_storage(settings)
    assert isinstance(storage, S3ObjectStorage)
    await storage.put(KEY, b"abc", "image/png")
    assert await storage.get(KEY) == b"abc"
    await close_storage(storage)
    assert storage._client is None
    local = build_storage(Settings(_env_file=None))
    assert isinstance(local, LocalObjectStorage)
    await close_storage(local)  # nothing to close, and no error


def test_production_needs_the_bucket_and_credentials_with_s3() -> None:
    real = production_settings(without=("storage_signing_key",))
    missing = Settings(_env_file=None, storage_backend="s3", **real).production_problems()
    assert {p.split()[0] for p in missing} == {
        "WARDROBE_STORAGE_S3_BUCKET",
        "WARDROBE_STORAGE_S3_REGION",
        "WARDROBE_STORAGE_S3_ACCESS_KEY_ID",
        "WARDROBE_STORAGE_S3_SECRET_ACCESS_KEY",
    }
    complete = Settings(
        _env_file=None,
        env="production",
        storage_backend="s3",
        storage_s3_endpoint_url="https://cos.ap-guangzhou.myqcloud.com",
        storage_s3_region="ap-guangzhou",
        storage_s3_bucket="imgs-1250000000",
        storage_s3_access_key_id="AKIDexample",
        storage_s3_secret_access_key="s" * 32,
        **real,
    )
    # The local backend's URL-signing key is not needed when the store signs.
    assert complete.production_problems() == []
    assert any("STORAGE_SIGNING_KEY" in p for p in Settings(_env_file=None, **real).production_problems())
