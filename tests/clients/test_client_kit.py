"""The client kit (clients/): what is committed there is what ``python3 dev.py clients`` makes from
the app as it is now, and the clients work.

- the OpenAPI snapshot is the app's document, whatever ``WARDROBE_*`` variables the machine has;
- the Python generated module and the TypeScript error codes are what clients/generate.py writes
  from the snapshot, and schema.d.ts, client.js and client.d.ts what the pinned openapi-typescript
  and TypeScript make (node and npm are required: a machine without them fails here);
- the Python client, with an API key made through the API, uploads, runs a feature to the end on
  the local provider and gets typed errors, against the real app in process (async, and blocking
  through a bridge into the test's event loop);
- the TypeScript client's own tests (envelope, errors, one refresh at a time, Idempotency-Key,
  uploads) pass in node against a stub fetch.
"""

from __future__ import annotations

import asyncio
import difflib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients.generate import (
    KIT,
    SNAPSHOT,
    TS_BUILT,
    TYPESCRIPT,
    build_document,
    build_typescript,
    error_codes,
    generated_files,
    load_snapshot,
    render_document,
)
from wardrobe_client import (
    AsyncWardrobeClient,
    Call,
    ErrorCode,
    StoredObject,
    Task,
    WardrobeClient,
    WardrobeError,
)
from wardrobe_client._core import backoff, unwrap

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import give_quota
from tests.modules.account.erasure_flows import clear_cooldown, thumbnail_feature
from tests.modules.providers.images import encode, subject_on_background
from wardrobe.core.errors import ErrorCode as ServerErrorCode

REGENERATE = "run `python3 dev.py clients` and commit what it changes"
# Codes the server has that no operation of the document lists (so no generated client knows
# them): Socket.IO's, the payment platforms' notifications', and every path's METHOD_NOT_ALLOWED.
# Fixing the document shrinks this set; nothing may join it.
UNLISTED = {
    "CONNECTION_LIMIT_REACHED",
    "METHOD_NOT_ALLOWED",
    "PAYMENT_SIGNATURE_INVALID",
}


def _drift(name: str, committed: str, made: str) -> str:
    """A short diff when ``committed`` is not ``made`` (whole files would drown the report)."""
    if committed == made:
        return ""
    diff = difflib.unified_diff(
        committed.splitlines(), made.splitlines(), f"committed {name}", "generated", n=1, lineterm=""
    )
    return f"clients/{name} is out of date: {REGENERATE}\n" + "\n".join(list(diff)[:80])


# -- The committed files are what the generator makes -----------------------------------------


def test_the_snapshot_is_the_apps_document_whatever_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Read, this one would change the document (/metrics would ask for the token): hidden, it does not.
    monkeypatch.setenv("WARDROBE_METRICS_TOKEN", "m" * 40)
    made = render_document(build_document())
    problem = _drift("openapi.json", SNAPSHOT.read_text(encoding="utf-8"), made)
    assert not problem, problem
    assert made.endswith("}\n")


def test_the_python_generated_parts_are_the_generators() -> None:
    for name, made in generated_files(load_snapshot()).items():
        problem = _drift(name, (KIT / name).read_text(encoding="utf-8"), made)
        assert not problem, problem


def test_the_error_codes_are_the_servers_and_none_goes_unlisted() -> None:
    listed = set(error_codes(load_snapshot()))
    server = {code.name for code in ServerErrorCode}
    assert "VALIDATION_FAILED" in listed
    assert listed <= server, listed - server
    assert server - listed == UNLISTED, f"codes no operation documents: {sorted(server - listed)}"
    assert {code.value for code in ErrorCode} == listed


def test_the_typescript_types_and_compiled_client_are_the_pinned_tools(tmp_path: Path) -> None:
    """schema.d.ts from openapi-typescript, client.js and client.d.ts from tsc (which also checks
    client.ts against the types), at the versions package-lock.json pins, in a scratch copy."""
    made = build_typescript(SNAPSHOT, TYPESCRIPT, tmp_path)
    assert set(made) == set(TS_BUILT)
    for name, text in made.items():
        problem = _drift(f"typescript/{name}", (TYPESCRIPT / name).read_text(encoding="utf-8"), text)
        assert not problem, problem


def test_the_typescript_client_passes_its_node_tests() -> None:
    node = shutil.which("node")
    assert node is not None, "node is not on PATH: install Node.js (on Debian: apt-get install nodejs npm)"
    test_file = TYPESCRIPT / "test" / "client.test.js"
    command = [node, "--test", "--test-reporter=tap", str(test_file)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603 - our test
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "# fail 0" in report, report
    passed = [int(line.split()[-1]) for line in report.splitlines() if line.startswith("# pass ")]
    assert passed, report
    assert passed[0] >= 9, report


# -- The Python client -------------------------------------------------------------------------


def test_unwrap_types_codes_and_answers_without_the_envelope() -> None:
    known = httpx.Response(409, json={"success": False, "code": "CONFLICT", "message": "m", "data": {"reason": "x"}})
    with pytest.raises(WardrobeError) as conflict:
        unwrap(known)
    assert conflict.value.code is ErrorCode.CONFLICT
    assert conflict.value.data == {"reason": "x"}
    newer = httpx.Response(401, json={"success": False, "code": "SOMETHING_NEW", "message": "m", "request_id": "r"})
    with pytest.raises(WardrobeError) as unknown:
        unwrap(newer)
    assert unknown.value.code == "SOMETHING_NEW"
    assert unknown.value.request_id == "r"
    gateway = httpx.Response(502, text="<html>", headers={"X-Request-ID": "edge"})
    with pytest.raises(WardrobeError) as proxy:
        unwrap(gateway)
    assert proxy.value.code is ErrorCode.DEPENDENCY_UNAVAILABLE
    assert (proxy.value.status, proxy.value.request_id) == (502, "edge")
    assert unwrap(httpx.Response(200, json={"success": True, "code": "OK", "message": "OK", "data": [1]})) == [1]


def test_backoff_grows_to_its_ceiling() -> None:
    delays = backoff(0.5, 2.0)
    assert [next(delays) for _ in range(6)] == [0.5, 0.75, 1.125, 1.6875, 2.0, 2.0]


@pytest.fixture
async def kit_api(api_factory: Any) -> Api:
    api: Api = await api_factory(worker_in_process=True)
    await thumbnail_feature(api, await login_as(api, "admin"))
    return api


async def _customer(api: Api) -> tuple[Session, str]:
    """A user with quota and an API key made as the docs say: an SMS code for ``create_api_key``."""
    owner = await sms_login(api.client)
    await give_quota(api, owner.user["id"], 10)
    await clear_cooldown(api, owner.phone)
    sent = await api.client.post("/api/v1/auth/sms-codes", json={"purpose": "create_api_key"}, headers=owner.headers)
    body = {
        "name": "client kit",
        "scopes": ["tasks:create", "tasks:read", "uploads:create"],
        "requests_per_minute": 600,
        "code": data(sent)["debug_code"],
    }
    made = data(await api.client.post("/api/v1/api-keys", json=body, headers=owner.headers), 201)
    secret: str = made["secret"]
    assert secret.startswith("wk_")
    return owner, secret


def _photo(seed: int = 0) -> bytes:
    image, _ = subject_on_background(96 + seed, 64)
    return encode(image)


def _transport(api: Api) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=api.app, client=("203.0.113.7", 40000))


def _check_finished(task: Task, created: Task, stored: StoredObject) -> None:
    assert task["id"] == created["id"]
    assert task["status"] == "succeeded", task
    assert task["refunded"] is False
    [output] = task["outputs"]
    assert str(output.get("key")).startswith("results/")
    assert stored["object_key"].startswith("uploads/")


async def test_the_async_client_runs_a_feature_with_an_api_key(kit_api: Api) -> None:
    api = kit_api
    _, secret = await _customer(api)
    async with AsyncWardrobeClient(secret, "http://wardrobe.test", transport=_transport(api)) as client:
        stored = await client.upload(_photo(), filename="look.png", content_type="image/png")
        assert (stored["width"], stored["height"], stored["content_type"]) == (96, 64, "image/png")
        inputs = {"image": stored["object_key"]}
        created = await client.create_task("thumb", inputs, idempotency_key="client-kit-0001")
        assert (await client.create_task("thumb", inputs, idempotency_key="client-kit-0001"))["id"] == created["id"]
        done = await client.wait_for_task(created["id"], timeout=60, poll_interval=0.02, max_interval=0.2)
        _check_finished(done, created, stored)
        other = await client.create_task("thumb", inputs)  # a key of its own: a second task
        assert other["id"] != created["id"]
        await client.wait_for_task(other["id"], timeout=60, poll_interval=0.02, max_interval=0.2)
        page = await client.list_tasks(limit=1)
        assert [t["id"] for t in page["items"]] == [other["id"]]
        assert page["next_cursor"]
        assert [t["id"] async for t in client.iter_tasks(page_size=1)] == [other["id"], created["id"]]
        assert (await client.list_tasks(status="failed"))["items"] == []
        assert (await client.list_tasks(feature="thumb", limit=5))["next_cursor"] is None

        with pytest.raises(WardrobeError) as invalid:
            await client.create_task("thumb", {"image": "uploads/0/someone-else.png"})
        assert invalid.value.code is ErrorCode.VALIDATION_FAILED
        assert invalid.value.status == 422
        assert [f["field"] for f in invalid.value.data] == ["inputs.image"]
        assert invalid.value.request_id
        with pytest.raises(WardrobeError) as missing:
            await client.get_task("no-such-task")
        assert (missing.value.code, missing.value.status) == (ErrorCode.NOT_FOUND, 404)
        with pytest.raises(WardrobeError) as outside:  # a route no scope of the key names
            await client.request(Call("GET", "/api/v1/billing/quota"))
        assert outside.value.code is ErrorCode.PERMISSION_DENIED


async def test_the_blocking_client_runs_a_feature_with_an_api_key(kit_api: Api) -> None:
    api = kit_api
    _, secret = await _customer(api)
    loop = asyncio.get_running_loop()
    app = _transport(api)

    async def forward(request: httpx.Request) -> httpx.Response:
        answer = await app.handle_async_request(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=await answer.aread())

    def bridge(request: httpx.Request) -> httpx.Response:
        """The blocking client runs in a thread; the app answers on the test's event loop."""
        return asyncio.run_coroutine_threadsafe(forward(request), loop).result(timeout=60)

    def customer_backend() -> tuple[Task, Task, StoredObject]:
        with WardrobeClient(secret, "http://wardrobe.test", transport=httpx.MockTransport(bridge)) as client:
            stored = client.upload(_photo(1), filename="look.png", content_type="image/png")
            created = client.create_task("thumb", {"image": stored["object_key"]})
            done = client.wait_for_task(created["id"], timeout=60, poll_interval=0.02, max_interval=0.2)
            assert [t["id"] for t in client.iter_tasks()] == [created["id"]]
            with pytest.raises(WardrobeError) as invalid:
                client.create_task("thumb", {"image": 5})
            assert invalid.value.code is ErrorCode.VALIDATION_FAILED
            return created, done, stored

    created, done, stored = await asyncio.to_thread(customer_backend)
    _check_finished(done, created, stored)
    assert (stored["width"], stored["height"]) == (97, 64)
