"""Uploads are stored as the image alone and served so that no browser renders them as a page; the
memory a decoded upload may take is bounded. On both ways in: the local backend's presigned PUT
(verified on arrival) and a direct upload to an S3 bucket completed through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import data, sms_login
from tests.modules.storage import samples
from tests.modules.storage.test_uploads_api import ask_upload, failed, send, start
from tests.modules.storage.test_uploads_s3_e2e import complete, s3_api, send_to_bucket
from tests.peers.s3_fixtures import S3Peer
from wardrobe.core.db import unit_of_work
from wardrobe.models import VerifiedUpload

POLYGLOTS = [
    ("png", samples.noise(48, 32, "PNG"), "image/png"),
    ("jpeg", samples.jpeg_hiding_an_end_marker(), "image/jpeg"),
    ("webp", samples.noise(48, 32, "WEBP"), "image/webp"),
]


async def verified_row(api: Api, key: str) -> VerifiedUpload:
    async with unit_of_work(api.infra.session_factory) as db:
        row = await db.scalar(select(VerifiedUpload).where(VerifiedUpload.object_key == key))
    assert row is not None
    return row


def served_safely(resp: httpx.Response, key: str, content_type: str) -> None:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == content_type
    name = key.rsplit("/", 1)[1]
    assert resp.headers["content-disposition"] == f"inline; filename=\"{name}\"; filename*=UTF-8''{name}"


@pytest.mark.parametrize(("name", "image", "content_type"), POLYGLOTS)
async def test_an_image_followed_by_a_page_is_stored_and_served_as_the_image_alone_local(
    api_factory: object, tmp_path: Path, name: str, image: bytes, content_type: str
) -> None:
    api = await start(api_factory, tmp_path)
    user = await sms_login(api.client)
    polyglot = image + samples.PAGE
    grant = await ask_upload(api, user, len(polyglot), content_type, filename=f"look.{name}")
    key = grant["object_key"]
    stored = data(await send(api, grant, polyglot), 201)
    assert stored["size"] == len(image)
    assert (tmp_path / "objects" / key).read_bytes() == image
    assert (await verified_row(api, key)).size == len(image)

    resp = await api.client.get(api.infra.storage.download_url(key, 60))
    served_safely(resp, key, content_type)
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.content == image


@pytest.mark.parametrize(("name", "image", "content_type"), POLYGLOTS)
async def test_an_image_followed_by_a_page_is_stored_and_served_as_the_image_alone_s3(
    api_factory: Any, s3_peer: S3Peer, name: str, image: bytes, content_type: str
) -> None:
    api = await s3_api(api_factory, s3_peer)
    user = await sms_login(api.client)
    polyglot = image + samples.PAGE
    body = {"filename": f"look.{name}", "content_type": content_type, "size": len(polyglot)}
    grant = data(await api.client.post("/api/v1/uploads", json=body, headers=user.headers))
    key = grant["object_key"]
    assert (await send_to_bucket(grant, polyglot)).status_code == 200
    assert await api.infra.storage.get(key) == polyglot  # what the client put in the bucket

    stored = data(await complete(api, user, key))
    assert stored["size"] == len(image)
    assert await api.infra.storage.get(key) == image
    # The row describes the object now in the bucket, so a task may use it.
    info = await api.infra.storage.head(key)
    row = await verified_row(api, key)
    assert info is not None
    assert row.size == info.size == len(image)
    assert row.etag is not None
    assert row.etag == info.etag
    assert data(await complete(api, user, key)) == stored  # completing again changes nothing

    # A bucket serves the type and disposition signed into the URL, not whatever was stored.
    url = api.infra.storage.download_url(key, 60)
    assert "response-content-disposition=" in url
    async with httpx.AsyncClient() as client:
        resp = await client.get(url)
    served_safely(resp, key, content_type)
    assert resp.content == image


async def test_a_result_stored_under_another_type_is_served_as_an_attachment(api_factory: Any, s3_peer: S3Peer) -> None:
    api = await s3_api(api_factory, s3_peer)
    key = "results/7/2026/11/page.html"
    await api.infra.storage.put(key, samples.PAGE, "text/html")
    async with httpx.AsyncClient() as client:
        resp = await client.get(api.infra.storage.download_url(key, 60))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["content-disposition"] == "attachment; filename=\"page.html\"; filename*=UTF-8''page.html"


BUDGET = 100 * 100 * 2 - 1  # an 8-bit 100x100 greyscale image fits; the same in 16 bits does not
HEAVY = [
    ("16-bit", samples.grey_png(100, 100, 16)),
    ("frames", samples.animated("PNG", 4, 40, 40)),  # 4 x 6400 bytes of RGBA
    ("rgb", samples.png_claiming_rgb(6_000, 6_000)),  # 144 MB claimed by a 100-byte file
]


async def test_uploads_whose_decoding_would_exceed_the_memory_budget_are_refused_local(
    api_factory: object, tmp_path: Path
) -> None:
    api = await start(api_factory, tmp_path, max_image_decode_bytes=BUDGET)
    user = await sms_login(api.client)
    light = samples.grey_png(100, 100, 8)
    grant = await ask_upload(api, user, len(light))
    assert data(await send(api, grant, light), 201)["size"] == len(light)
    for label, heavy in HEAVY:
        grant = await ask_upload(api, user, len(heavy))
        problem = failed(await send(api, grant, heavy), 422, "UPLOAD_INVALID")
        assert problem["reason"] == "decoded_too_large", label
        assert await api.infra.storage.head(grant["object_key"]) is None


async def test_uploads_whose_decoding_would_exceed_the_memory_budget_are_refused_s3(
    api_factory: Any, s3_peer: S3Peer
) -> None:
    api = await s3_api(api_factory, s3_peer, max_image_decode_bytes=BUDGET)
    user = await sms_login(api.client)
    for label, heavy in HEAVY:
        body = {"filename": "heavy.png", "content_type": "image/png", "size": len(heavy)}
        grant = data(await api.client.post("/api/v1/uploads", json=body, headers=user.headers))
        assert (await send_to_bucket(grant, heavy)).status_code == 200
        problem = failed(await complete(api, user, grant["object_key"]), 422, "UPLOAD_INVALID")
        assert problem["reason"] == "decoded_too_large", label
        assert await api.infra.storage.head(grant["object_key"]) is None  # deleted from the bucket
