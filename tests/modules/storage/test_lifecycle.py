"""Lifecycle rules: put on the bucket and read back as applied; on local files, the scheduler's
expiry of tmp/ does the same; `wardrobe storage apply-lifecycle` on both."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.peers.s3_fixtures import S3_CREDENTIALS, S3Peer
from wardrobe.cli import app
from wardrobe.modules.storage import lifecycle
from wardrobe.modules.storage.backend import LocalObjectStorage
from wardrobe.modules.storage.s3 import S3ObjectStorage
from wardrobe.settings import get_settings


async def test_the_rules_read_back_from_the_bucket_as_applied(s3_storage: S3ObjectStorage, s3_peer: S3Peer) -> None:
    assert await s3_storage.get_lifecycle() == []
    await s3_storage.put_lifecycle(
        [{"ID": "old", "Filter": {"Prefix": "x/"}, "Status": "Enabled", "Expiration": {"Days": 9}}]
    )
    applied = await lifecycle.apply(s3_storage)
    by_id = {rule["ID"]: rule for rule in applied}
    assert set(by_id) == {"wardrobe-tmp-expires", "wardrobe-abort-incomplete-uploads"}  # the old rule replaced
    assert by_id["wardrobe-tmp-expires"]["Filter"] == {"Prefix": "tmp/"}
    assert by_id["wardrobe-tmp-expires"]["Expiration"]["Days"] == 1
    assert by_id["wardrobe-abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    # Read by an independent client, as an operator would check it.
    client = s3_peer.client()
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=s3_peer.bucket)["Rules"]
    finally:
        client.close()
    assert {r["ID"] for r in rules} == set(by_id)
    assert await lifecycle.apply(s3_storage) == applied  # idempotent


async def test_local_tmp_objects_older_than_a_day_expire_and_nothing_else(tmp_path: Path) -> None:
    storage = LocalObjectStorage(tmp_path, "", b"k" * 32)
    for key in ("tmp/2026/11/20/old.png", "tmp/2026/11/29/new.png", "uploads/1/2026/01/old.png"):
        await storage.put(key, b"x", "image/png")
    ancient = time.time() - 2 * 86400
    for key in ("tmp/2026/11/20/old.png", "uploads/1/2026/01/old.png"):
        os.utime(storage._data_path(key), (ancient, ancient))
    assert await lifecycle.expire_local(storage) == 1
    assert await storage.head("tmp/2026/11/20/old.png") is None
    assert await storage.head("tmp/2026/11/29/new.png") is not None
    assert await storage.head("uploads/1/2026/01/old.png") is not None  # gc's business, not lifecycle's


async def test_a_bucket_is_never_swept_by_the_local_expiry(s3_storage: S3ObjectStorage) -> None:
    await s3_storage.put("tmp/2020/01/01/x.png", b"x", "image/png")
    assert await lifecycle.expire_local(s3_storage) == 0
    assert await s3_storage.head("tmp/2020/01/01/x.png") is not None


def test_the_command_applies_the_rules_to_the_configured_bucket(
    s3_peer: S3Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "WARDROBE_STORAGE_BACKEND": "s3",
        "WARDROBE_STORAGE_S3_ENDPOINT_URL": s3_peer.endpoint_url,
        "WARDROBE_STORAGE_S3_REGION": s3_peer.region,
        "WARDROBE_STORAGE_S3_BUCKET": s3_peer.bucket,
        "WARDROBE_STORAGE_S3_ACCESS_KEY_ID": S3_CREDENTIALS.access_key_id,
        "WARDROBE_STORAGE_S3_SECRET_ACCESS_KEY": S3_CREDENTIALS.secret_access_key,
        "WARDROBE_STORAGE_S3_ADDRESSING_STYLE": "path",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["storage", "apply-lifecycle"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert {rule["ID"] for rule in json.loads(result.output)} == {
        "wardrobe-tmp-expires",
        "wardrobe-abort-incomplete-uploads",
    }
    client = s3_peer.client()
    try:
        assert len(client.get_bucket_lifecycle_configuration(Bucket=s3_peer.bucket)["Rules"]) == 2
    finally:
        client.close()
