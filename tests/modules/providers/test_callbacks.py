"""Vendor callbacks: only a URL we signed is accepted; each vendor event is recorded once
(duplicates counted), out of order or not; a malformed or forged one changes nothing."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import data
from wardrobe.core.db import unit_of_work
from wardrobe.models import VendorCallback
from wardrobe.modules.providers.callbacks import callback_url, step_ref, vendor_job_for


def _task_end(task_id: str, status: str = "SUCCESS") -> bytes:
    outputs = {"code": 0, "msg": "success", "data": [{"fileUrl": f"https://files.example/{task_id}.png"}]}
    if status != "SUCCESS":
        outputs = {"code": 805, "msg": "APIKEY_TASK_STATUS_ERROR", "data": {"failedReason": {"node_id": "3"}}}
    return json.dumps({"event": "TASK_END", "taskId": task_id, "eventData": json.dumps(outputs)}).encode()


def _path(api: Api, ref: str) -> str:
    url = callback_url(api.settings, "runninghub", ref)
    assert url is not None
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def _rows(api: Api) -> list[VendorCallback]:
    async with unit_of_work(api.infra.session_factory) as db:
        return list(await db.scalars(select(VendorCallback).order_by(VendorCallback.id)))


async def test_a_signed_callback_is_recorded_once_and_finds_its_job(api_factory: Any) -> None:
    api: Api = await api_factory(vendor_callback_base_url="https://api.wardrobe.test")
    ref = step_ref("t" * 32, "render")
    path = _path(api, ref)
    assert path.startswith(f"/api/v1/callbacks/runninghub/{ref}?sig=")

    first = data(await api.client.post(path, content=_task_end("1900000000000000001")))
    again = data(await api.client.post(path, content=_task_end("1900000000000000001")))
    assert first == {"accepted": True, "duplicate": False}
    assert again == {"accepted": True, "duplicate": True}
    [row] = await _rows(api)
    assert (row.provider, row.ref, row.vendor_task_id, row.deliveries) == ("runninghub", ref, "1900000000000000001", 2)
    assert row.payload["eventData"]["data"][0]["fileUrl"].endswith("1900000000000000001.png")
    assert await vendor_job_for(api.infra.session_factory, "runninghub", ref) == "1900000000000000001"
    assert await vendor_job_for(api.infra.session_factory, "runninghub", step_ref("u" * 32, "render")) is None


async def test_forged_malformed_or_unknown_callbacks_change_nothing(api_factory: Any) -> None:
    api: Api = await api_factory(vendor_callback_base_url="https://api.wardrobe.test")
    ref = step_ref("t" * 32, "render")
    good = _path(api, ref)
    other = _path(api, step_ref("o" * 32, "render"))
    forged = good.split("?sig=")[0] + "?sig=" + "0" * 40
    swapped = good.split("?sig=")[0] + "?sig=" + other.split("?sig=")[1]  # another step's signature

    for path in (forged, swapped):
        resp = await api.client.post(path, content=_task_end("1900000000000000002"))
        assert resp.status_code == 403
        assert resp.json()["code"] == "CALLBACK_SIGNATURE_INVALID"
    bad = await api.client.post(good, content=b'{"event": "TASK_END"}')  # no taskId
    assert bad.status_code == 400
    assert bad.json()["code"] == "MALFORMED_REQUEST"
    not_json = await api.client.post(good, content=b"<xml/>")
    assert not_json.status_code == 400
    unknown = await api.client.post(good.replace("/runninghub/", "/nosuchvendor/"), content=_task_end("1"))
    assert unknown.status_code == 404
    assert await _rows(api) == []
    metrics = (await api.client.get("/metrics")).text
    assert 'wardrobe_vendor_callbacks_total{outcome="bad_signature",provider="runninghub"}' in metrics


async def test_events_of_one_job_in_any_order_are_each_recorded_once(api_factory: Any) -> None:
    api: Api = await api_factory(vendor_callback_base_url="https://api.wardrobe.test")
    ref = step_ref("t" * 32, "render")
    path = _path(api, ref)
    later = json.dumps({"event": "TASK_END", "taskId": "42", "eventData": "not json {"}).encode()
    for body in (later, _task_end("42"), later, _task_end("42")):
        assert (await api.client.post(path, content=body)).status_code == 200
    async with unit_of_work(api.infra.session_factory) as db:
        count = await db.scalar(select(func.count()).select_from(VendorCallback))
    rows = await _rows(api)
    assert count == 1  # one vendor event (42, TASK_END), whatever the bodies said
    assert rows[0].deliveries == 4
    assert rows[0].payload["eventData"] == {"unparsed": "not json {"}  # the first one recorded wins


def test_no_public_base_url_means_no_callback_url() -> None:
    from wardrobe.settings import Environment, Settings

    assert callback_url(Settings(env=Environment.TEST, _env_file=None), "runninghub", "x.y") is None
