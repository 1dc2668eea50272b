"""Uploads through the API: presigned PUT, verification, signed GET."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.fixtures.auth import Session, data, sms_login
from tests.modules.storage import samples
from wardrobe.modules.storage.backend import OBJECTS_PATH, _sign
from wardrobe.modules.storage.keys import owner_of

PNG = samples.noise(48, 32, "PNG")
FORMATS = [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]


async def start(api_factory: object, tmp_path: Path, **overrides: object) -> Api:
    api: Api = await api_factory(storage_local_root=tmp_path / "objects", **overrides)  # type: ignore[operator]
    return api


async def ask_upload(
    api: Api, s: Session, size: int, content_type: str = "image/png", filename: str = "look.png"
) -> dict[str, Any]:
    body = {"filename": filename, "content_type": content_type, "size": size}
    grant: dict[str, Any] = data(await api.client.post("/api/v1/uploads", json=body, headers=s.headers))
    return grant


async def send(api: Api, grant: dict[str, Any], body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    upload = grant["upload"]
    return await api.client.request(
        upload["method"], upload["url"], content=body, headers=upload["headers"] if headers is None else headers
    )


def failed(resp: httpx.Response, status: int, code: str) -> Any:
    assert (resp.status_code, resp.json()["code"]) == (status, code), resp.text
    return resp.json()["data"]


async def uploaded(api: Api, s: Session, body: bytes = PNG, content_type: str = "image/png") -> str:
    grant = await ask_upload(api, s, len(body), content_type)
    data(await send(api, grant, body), 201)
    key: str = grant["object_key"]
    return key


@pytest.mark.parametrize(("fmt", "content_type"), FORMATS)
async def test_upload_then_download(api_factory: object, tmp_path: Path, fmt: str, content_type: str) -> None:
    api = await start(api_factory, tmp_path)
    s = await sms_login(api.client)
    image = samples.noise(48, 32, fmt)
    before = time.time()
    grant = await ask_upload(api, s, len(image), content_type, filename="我的照片.img")
    key = grant["object_key"]
    assert key.startswith(f"uploads/{s.user['id']}/")
    assert owner_of(key) == s.user["id"]
    assert grant["upload"]["method"] == "PUT"
    assert grant["upload"]["url"].startswith(f"{OBJECTS_PATH}{key}?")
    assert grant["upload"]["headers"] == {"Content-Type": content_type}
    assert grant["max_size"] == len(image)
    expires_at = datetime.fromisoformat(grant["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 900 - 5 <= expires_at <= time.time() + 900 + 5
    assert await api.infra.storage.head(key) is None

    stored = data(await send(api, grant, image), 201)
    assert stored == {"object_key": key, "content_type": content_type, "size": len(image), "width": 48, "height": 32}
    info = await api.infra.storage.head(key)
    assert info is not None
    assert (info.size, info.content_type) == (len(image), content_type)
    assert (tmp_path / "objects" / key).read_bytes() == image

    resp = await api.client.get(api.infra.storage.download_url(key, 60))
    assert resp.status_code == 200
    assert resp.content == image
    assert resp.headers["content-type"] == content_type
    assert resp.headers["cache-control"].startswith("private")
    assert resp.headers["x-content-type-options"] == "nosniff"
    name = key.rsplit("/", 1)[1]
    assert resp.headers["content-disposition"] == f"inline; filename=\"{name}\"; filename*=UTF-8''{name}"


async def test_no_one_reads_an_object_without_its_signature(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path)
    owner, other = await sms_login(api.client), await sms_login(api.client)
    key = await uploaded(api, owner)
    theirs = await uploaded(api, other)
    for headers in ({}, owner.headers, other.headers):  # a bearer token is no substitute
        failed(await api.client.get(OBJECTS_PATH + key, headers=headers), 403, "PERMISSION_DENIED")
    url = api.infra.storage.download_url(key, 60)
    # The owner's signature does not open someone else's key.
    failed(await api.client.get(url.replace(key, theirs)), 403, "PERMISSION_DENIED")
    # A signed URL is a capability, like S3's: whoever holds it may read, until it expires.
    assert (await api.client.get(url, headers=other.headers)).content == PNG


async def test_tampered_upload_urls_are_refused(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path)
    s = await sms_login(api.client)
    grant = await ask_upload(api, s, len(PNG))
    url, key = grant["upload"]["url"], grant["object_key"]
    signature = url.rsplit("signature=", 1)[1]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    tampered = [
        url.replace(signature, flipped),
        url.replace(f"max_size={len(PNG)}", f"max_size={len(PNG) * 100}"),
        url.replace("image/png", "image/jpeg"),
        url.replace(key, key.replace("uploads/", "results/")),
        url.split("&signature=")[0],
        url.split("?")[0],
    ]
    for bad in tampered:
        failed(await send(api, {"upload": {**grant["upload"], "url": bad}}, PNG), 403, "PERMISSION_DENIED")
    # A PUT signature does not sign a GET, even for the same key.
    failed(await api.client.get(url), 403, "PERMISSION_DENIED")
    assert await api.infra.storage.list("") == []
    data(await send(api, grant, PNG), 201)


async def test_expired_urls_say_so(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path)
    s = await sms_login(api.client)
    key = await uploaded(api, s)
    target = api.infra.storage.upload_target(key.replace(".png", "-2.png"), "image/png", len(PNG), -1)
    resp = await api.client.put(target.url, content=PNG, headers=target.headers)
    failed(resp, 403, "SIGNED_URL_EXPIRED")
    failed(await api.client.get(api.infra.storage.download_url(key, -1)), 403, "SIGNED_URL_EXPIRED")
    english = await api.client.get(api.infra.storage.download_url(key, -1), headers={"Accept-Language": "en"})
    assert "expired" in english.json()["message"]


async def test_content_type_must_be_the_signed_one(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path)
    s = await sms_login(api.client)
    grant = await ask_upload(api, s, len(PNG))
    for headers in ({"Content-Type": "image/jpeg"}, {"Content-Type": "image/png; charset=binary"}, {}):
        failed(await send(api, grant, PNG, headers), 403, "PERMISSION_DENIED")
    data(await send(api, grant, PNG), 201)


async def test_upload_requests_are_validated(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path, max_upload_bytes=2000)
    s = await sms_login(api.client)
    cases = [
        ({"filename": "a.png", "content_type": "image/png", "size": 2001}, "size"),
        ({"filename": "a.png", "content_type": "image/png", "size": 0}, "size"),
        ({"filename": "a.gif", "content_type": "image/gif", "size": 10}, "content_type"),
        ({"filename": "a.svg", "content_type": "image/svg+xml", "size": 10}, "content_type"),
        ({"filename": "../../a.png", "content_type": "image/png", "size": 10}, "filename"),
        ({"filename": "a\x00.png", "content_type": "image/png", "size": 10}, "filename"),
        ({"filename": "a.png", "content_type": "image/png", "size": 10, "object_key": "uploads/1/x.png"}, "object_key"),
    ]
    for body, field in cases:
        resp = await api.client.post("/api/v1/uploads", json=body, headers=s.headers)
        assert failed(resp, 422, "VALIDATION_FAILED")[0]["field"] == field, body
    failed(await api.client.post("/api/v1/uploads", json=cases[0][0]), 401, "AUTH_REQUIRED")


async def test_bodies_beyond_the_signed_size_are_413(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path)
    s = await sms_login(api.client)
    grant = await ask_upload(api, s, len(PNG))
    failed(await send(api, grant, PNG + b"\0" * 10), 413, "PAYLOAD_TOO_LARGE")

    async def streamed() -> AsyncIterator[bytes]:  # chunked: no Content-Length to judge by
        yield PNG
        yield b"\0" * 10

    resp = await send(api, grant, streamed())
    assert "content-length" not in resp.request.headers
    failed(resp, 413, "PAYLOAD_TOO_LARGE")
    assert await api.infra.storage.list("") == []
    data(await send(api, grant, PNG), 201)


async def test_what_is_not_the_declared_image_is_refused(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path)
    s = await sms_login(api.client)
    jpeg = samples.noise(48, 32, "JPEG")
    grant = await ask_upload(api, s, 100_000)
    cases = [
        (b"#!/bin/sh\necho this is no image\n", "unsupported_format"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "unsupported_format"),
        (samples.noise(fmt="GIF"), "unsupported_format"),
        (jpeg, "type_mismatch"),
        (samples.truncated(PNG), "corrupt"),
        (samples.png_bomb(20_000, 20_000), "too_many_pixels"),  # 400 MP in a few kB
        (samples.png_bomb(8_000, 8_000), "too_many_pixels"),  # 64 MP: over the 40 MP cap
        (samples.png_claiming(100_000, 100_000), "too_many_pixels"),
    ]
    for body, reason in cases:
        assert len(body) <= 100_000
        refused = failed(await send(api, grant, body), 422, "UPLOAD_INVALID")
        assert refused["reason"] == reason, reason
    # A refused body stores nothing, so the same URL still takes the right bytes.
    assert await api.infra.storage.list("") == []
    data(await send(api, grant, PNG), 201)


async def test_the_pixel_cap_is_a_setting(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path, max_image_pixels=48 * 32 - 1)
    s = await sms_login(api.client)
    grant = await ask_upload(api, s, len(PNG))
    assert failed(await send(api, grant, PNG), 422, "UPLOAD_INVALID")["reason"] == "too_many_pixels"


async def test_replaying_an_upload_is_a_conflict(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path)
    s = await sms_login(api.client)
    grant = await ask_upload(api, s, len(PNG))
    data(await send(api, grant, PNG), 201)
    failed(await send(api, grant, samples.noise(48, 32, seed=8)), 409, "CONFLICT")
    assert await api.infra.storage.get(grant["object_key"]) == PNG
    # Two racing PUTs of one URL: exactly one stores, whatever the interleaving.
    grant = await ask_upload(api, s, len(PNG))
    statuses = sorted(r.status_code for r in await asyncio.gather(send(api, grant, PNG), send(api, grant, PNG)))
    assert statuses == [201, 409]


async def test_keys_cannot_escape_the_storage_root(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path)
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    (tmp_path / "objects").mkdir(exist_ok=True)
    expires = str(int(time.time()) + 60)
    key = api.settings.storage_signing_key.get_secret_value().encode()
    for escaping in ("../secret.txt", "uploads/../../secret.txt", "/etc/passwd"):
        # Even a correctly signed URL for such a key is refused: the key is checked first.
        query = f"expires={expires}&signature={_sign(key, ('GET', escaping, expires, None, None, None))}"
        encoded = escaping.replace(".", "%2E").replace("/", "%2F")
        for path in (OBJECTS_PATH + encoded, OBJECTS_PATH + escaping.replace(".", "%2E")):
            resp = await api.client.get(f"{path}?{query}")
            failed(resp, 403, "PERMISSION_DENIED")
            assert b"top secret" not in resp.content
            put_query = f"expires={expires}&content_type=image/png&max_size=100&signature=x"
            failed(await api.client.put(f"{path}?{put_query}", content=PNG), 403, "PERMISSION_DENIED")
    # Unencoded, the client itself resolves "..": the request never reaches the storage routes.
    failed(await api.client.get(OBJECTS_PATH + "../../../secret.txt"), 404, "NOT_FOUND")
    assert (tmp_path / "secret.txt").read_bytes() == b"top secret"


async def test_download_headers_and_missing_objects(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path)
    s = await sms_login(api.client)
    key = await uploaded(api, s)
    resp = await api.client.get(api.infra.storage.download_url(key, 60, "结果 1.png"))
    assert resp.content == PNG
    assert resp.headers["content-disposition"] == (
        "attachment; filename=\"__ 1.png\"; filename*=UTF-8''%E7%BB%93%E6%9E%9C%201.png"
    )
    missing = key.replace(".png", "-missing.png")
    failed(await api.client.get(api.infra.storage.download_url(missing, 60)), 404, "NOT_FOUND")
    # Whatever else lands in storage is never rendered by a browser from the API's origin.
    await api.infra.storage.put("tmp/2026/11/22/page.html", b"<script>alert(1)</script>", "text/html")
    resp = await api.client.get(api.infra.storage.download_url("tmp/2026/11/22/page.html", 60))
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["content-disposition"] == "attachment; filename=\"page.html\"; filename*=UTF-8''page.html"
    assert resp.headers["x-content-type-options"] == "nosniff"


async def test_upload_urls_are_rate_limited_per_user(api_factory: object, tmp_path: Path) -> None:
    api = await start(api_factory, tmp_path, upload_rate_limits="2/hour")
    s, other = await sms_login(api.client), await sms_login(api.client)
    await ask_upload(api, s, 10)
    await ask_upload(api, s, 10)
    resp = await api.client.post(
        "/api/v1/uploads", json={"filename": "a.png", "content_type": "image/png", "size": 10}, headers=s.headers
    )
    failed(resp, 429, "RATE_LIMITED")
    assert int(resp.headers["retry-after"]) > 0
    await ask_upload(api, other, 10)


async def test_an_upload_may_exceed_the_json_body_cap(api_factory: object, tmp_path: Path) -> None:
    # Needs the EdgeMiddleware to cap the storage objects path at max_upload_bytes, not
    # max_body_bytes (1 MiB): the handler enforces the signed size itself.
    api = await start(api_factory, tmp_path)
    big = samples.noise(720, 720)  # ~1.5 MB of incompressible pixels
    assert len(big) > api.settings.max_body_bytes
    s = await sms_login(api.client)
    grant = await ask_upload(api, s, len(big))
    assert data(await send(api, grant, big), 201)["width"] == 720
    # The JSON routes keep their cap.
    resp = await api.client.post("/api/v1/uploads", content=b"{" + b" " * len(big) + b"}", headers=s.headers)
    failed(resp, 413, "PAYLOAD_TOO_LARGE")
