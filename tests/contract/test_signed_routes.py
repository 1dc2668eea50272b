"""Routes a fuzzer cannot open, because a signature authorises them (presigned object URLs, vendor
callbacks), answer what the document says on their success paths too: each answer's status is
documented, its media type is the documented one, and its body fits the documented schema."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import schemathesis

from tests.conftest import Api
from tests.fixtures.auth import data, sms_login
from tests.modules.storage.test_uploads_api import PNG
from wardrobe.modules.providers.callbacks import callback_url, step_ref


def holds_to_the_document(api: Api, method: str, template: str, resp: httpx.Response) -> None:
    """The answer's status is documented, with its media type, body schema and headers; an error's
    code is one of those its status lists."""
    document = api.app.openapi()
    responses = document["paths"][template][method.lower()]["responses"]
    assert str(resp.status_code) in responses, (method, template, resp.status_code, sorted(responses))
    documented = responses[str(resp.status_code)]
    content = documented.get("content", {})
    media = resp.headers["content-type"].split(";")[0].strip()
    assert media in content, (method, template, media, sorted(content))
    operation = schemathesis.openapi.from_dict(document)[template][method.upper()]
    operation.validate_response(resp)
    for name, header in documented.get("headers", {}).items():
        assert not header.get("required") or name.lower() in resp.headers, (template, name)
    if resp.status_code >= 400:
        [limit] = [part for part in content[media]["schema"]["allOf"] if "properties" in part]
        assert resp.json()["code"] in limit["properties"]["code"]["enum"], (template, resp.text)


async def test_a_presigned_upload_and_download_answer_as_documented(api: Api) -> None:
    user = await sms_login(api.client)
    body = {"filename": "look.png", "content_type": "image/png", "size": len(PNG)}
    grant = data(await api.client.post("/api/v1/uploads", json=body, headers=user.headers))
    upload = grant["upload"]
    template = "/api/v1/storage/objects/{key}"
    put = await api.client.put(upload["url"], content=PNG, headers=upload["headers"])
    assert put.status_code == 201
    holds_to_the_document(api, "PUT", template, put)
    replay = await api.client.put(upload["url"], content=PNG, headers=upload["headers"])
    assert replay.status_code == 409
    holds_to_the_document(api, "PUT", template, replay)

    url = api.infra.storage.download_url(grant["object_key"], 60, None)
    got = await api.client.get(url)
    assert (got.status_code, got.content) == (200, PNG)
    holds_to_the_document(api, "GET", template, got)
    download = api.app.openapi()["paths"][template]["get"]["responses"]["200"]
    assert {"X-Content-Type-Options", "Content-Disposition", "Cache-Control"} <= set(download["headers"])
    forged = await api.client.get(url[:-1] + ("0" if url[-1] != "0" else "1"))
    assert forged.status_code == 403
    holds_to_the_document(api, "GET", template, forged)


def _task_end(task_id: str) -> bytes:
    outputs = {"code": 0, "msg": "success", "data": [{"fileUrl": f"https://files.example/{task_id}.png"}]}
    return json.dumps({"event": "TASK_END", "taskId": task_id, "eventData": json.dumps(outputs)}).encode()


async def test_a_signed_vendor_callback_answers_as_documented(api_factory: Any) -> None:
    api: Api = await api_factory(vendor_callback_base_url="https://api.wardrobe.test")
    url = callback_url(api.settings, "runninghub", step_ref("t" * 32, "render"))
    assert url is not None
    parts = urlsplit(url)
    path = f"{parts.path}?{parts.query}"
    template = "/api/v1/callbacks/{provider}/{ref}"
    for body, status in ((_task_end("1900000000000000001"), 200), (_task_end("1900000000000000001"), 200)):
        resp = await api.client.post(path, content=body)
        assert resp.status_code == status
        holds_to_the_document(api, "POST", template, resp)
    for bad_path, body, status in (
        (path, b'{"event": "TASK_END"}', 400),
        (path.split("?sig=")[0] + "?sig=" + "0" * 40, _task_end("2"), 403),
        (path.replace("/runninghub/", "/nosuchvendor/"), _task_end("3"), 404),
    ):
        resp = await api.client.post(bad_path, content=body)
        assert resp.status_code == status, resp.text
        holds_to_the_document(api, "POST", template, resp)
