"""The envelope and error handling at the edge: every failure leaves in the envelope."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.conftest import Api


def _envelope_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"success", "code", "message", "data", "request_id"}
    assert body["success"] is False
    assert body["code"] == code
    assert resp.headers["x-request-id"] == body["request_id"]
    return body


async def test_unknown_route_and_wrong_method(api: Api) -> None:
    _envelope_error(await api.client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    _envelope_error(await api.client.put("/api/v1/users/me"), 405, "METHOD_NOT_ALLOWED")


async def test_malformed_json_is_400(api: Api) -> None:
    resp = await api.client.post(
        "/api/v1/auth/login", content=b'{"method": "sms", ', headers={"content-type": "application/json"}
    )
    _envelope_error(resp, 400, "MALFORMED_REQUEST")


async def test_validation_errors_list_their_fields(api: Api) -> None:
    resp = await api.client.post("/api/v1/auth/login", json={"method": "sms", "phone": "1", "code": "12"})
    body = _envelope_error(resp, 422, "VALIDATION_FAILED")
    fields = {item["field"] for item in body["data"]}
    assert {"sms.phone", "sms.code"} <= fields
    assert all(item["message"] for item in body["data"])
    resp = await api.client.post("/api/v1/auth/login", json={"method": "carrier-pigeon"})
    _envelope_error(resp, 422, "VALIDATION_FAILED")


async def test_body_too_large_declared_and_streamed(api_factory: object) -> None:
    api: Api = await api_factory(max_body_bytes=1024)  # type: ignore[operator]
    big = b'{"refresh_token": "' + b"x" * 5000 + b'"}'
    resp = await api.client.post("/api/v1/auth/refresh", content=big, headers={"content-type": "application/json"})
    _envelope_error(resp, 413, "PAYLOAD_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 500

    resp = await api.client.post("/api/v1/auth/refresh", content=chunks(), headers={"content-type": "application/json"})
    _envelope_error(resp, 413, "PAYLOAD_TOO_LARGE")


async def test_language_follows_accept_language(api: Api) -> None:
    zh = (await api.client.get("/api/v1/users/me")).json()["message"]
    en = (await api.client.get("/api/v1/users/me", headers={"Accept-Language": "en-US,en;q=0.9"})).json()["message"]
    weighted = (await api.client.get("/api/v1/users/me", headers={"Accept-Language": "zh;q=0.2, en;q=0.8"})).json()
    assert zh == "请先登录"
    assert en == "Authentication required"
    assert weighted["message"] == en


async def test_request_id_is_accepted_echoed_or_made(api: Api) -> None:
    resp = await api.client.get("/health", headers={"X-Request-ID": "trace-abc.123"})
    assert resp.headers["x-request-id"] == "trace-abc.123"
    assert resp.json()["request_id"] == "trace-abc.123"
    resp = await api.client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert resp.headers["x-request-id"] != "bad id with spaces"
    assert len(resp.headers["x-request-id"]) == 32


async def test_internal_errors_hide_their_cause(api: Api) -> None:
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM vendor_table")

    api.app.include_router(router)
    # Starlette re-raises after answering 500 (for servers to log); this client only reads the answer.
    import httpx

    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://wardrobe.test") as client:
        resp = await client.get("/boom")
    body = _envelope_error(resp, 500, "INTERNAL_ERROR")
    assert "SELECT" not in resp.text
    assert body["data"] is None


async def test_health_endpoints(api: Api) -> None:
    for path in ("/health", "/health/db", "/health/redis", "/health/ready"):
        resp = await api.client.get(path)
        assert resp.status_code == 200, path
        assert resp.json()["success"] is True
    ready = (await api.client.get("/health/ready")).json()["data"]
    assert ready["db"]["status"] == "ok"
    assert ready["redis"]["detail"] == ("redis" if api.settings.redis_url else "embedded (in-process)")


async def test_health_reports_a_dead_database(api_factory: object) -> None:
    api: Api = await api_factory()  # type: ignore[operator]
    await api.infra.engine.dispose()
    from sqlalchemy.ext.asyncio import create_async_engine

    # A database that cannot be reached: a closed port, or a SQLite file under a missing directory.
    unreachable = (
        "mysql+asyncmy://nobody@127.0.0.1:1/none"
        if api.settings.redis_url
        else "sqlite+aiosqlite:////nonexistent-dir/wardrobe.db"
    )
    api.infra.engine = create_async_engine(unreachable)
    resp = await api.client.get("/health/ready")
    body = _envelope_error(resp, 503, "DEPENDENCY_UNAVAILABLE")
    assert body["data"]["db"]["status"] == "down"


async def test_metrics_label_routes_by_template(api: Api) -> None:
    await api.client.get("/api/v1/admin/users/12345")
    await api.client.get("/health")
    text = (await api.client.get("/metrics")).text
    assert 'route="/health"' in text
    assert not re.search(r'route="[^"]*12345', text)  # (digits may occur in the timestamps)
    assert "wardrobe_http_request_duration_seconds_bucket" in text


async def test_openapi_documents_every_route(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            assert {"200", "201", "202", "204"} & set(op["responses"]), (method, path)
            # Platform notifications answer in the platform's protocol, not the envelope.
            if path.startswith("/api/") and not path.startswith("/api/v1/payments/"):
                assert "422" in op["responses"], (method, path)
    assert (await api.client.get("/docs")).status_code == 200
