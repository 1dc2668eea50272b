"""The RunningHub peer speaks RunningHub's OpenAPI v1, checked over real HTTP with httpx: what it
refuses and with which code, the task lifecycle as ``/status`` and ``/outputs`` tell it, uploads,
the per-key cap, faults, and TASK_END webhooks with their retries and records."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.peers.runninghub import (
    ACCOUNT_STATUS,
    AI_APP_RUN,
    CANCEL,
    CREATE,
    JSON_API_FORMAT,
    OUTPUTS,
    RETRY_WEBHOOK,
    STATUS,
    UPLOAD,
    WEBHOOK_DETAIL,
    OutputFile,
    Workflow,
    result_png,
)
from tests.peers.runninghub_fixtures import (
    MODEL_PHOTO_WEBAPP_ID,
    MODEL_PHOTO_WORKFLOW_ID,
    OTHER_RUNNINGHUB_API_KEY,
    OUTFIT_CHANGE_WORKFLOW_ID,
    TEST_RUNNINGHUB_API_KEY,
    TEST_RUNNINGHUB_CAP,
    ServedRunningHubPeer,
)
from tests.peers.server import PeerServer

KEY = TEST_RUNNINGHUB_API_KEY


class Client:
    """A RunningHub client as the docs describe it: Bearer header and ``apiKey`` in the body."""

    def __init__(self, http: httpx.AsyncClient, key: str = KEY) -> None:
        self.http = http
        self.key = key

    async def call(self, path: str, body: dict[str, Any] | None = None, *, key: str | None = None) -> dict[str, Any]:
        key = key or self.key
        response = await self.http.post(
            path, json={"apiKey": key, **(body or {})}, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        assert set(answer) == {"code", "msg", "data"}
        return answer

    async def create(self, workflow_id: str = MODEL_PHOTO_WORKFLOW_ID, **body: Any) -> dict[str, Any]:
        return await self.call(CREATE, {"workflowId": workflow_id, **body})

    async def create_task(self, workflow_id: str = MODEL_PHOTO_WORKFLOW_ID, **body: Any) -> str:
        answer = await self.create(workflow_id, **body)
        assert answer["code"] == 0, answer
        return str(answer["data"]["taskId"])

    async def upload(self, content: bytes, filename: str = "person.png", file_type: str = "image") -> dict[str, Any]:
        response = await self.http.post(
            UPLOAD,
            data={"apiKey": self.key, "fileType": file_type},
            files={"file": (filename, content, "image/png")},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        assert response.status_code == 200
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture
async def client(runninghub_peer: ServedRunningHubPeer) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(base_url=runninghub_peer.base_url, timeout=10) as http:
        yield Client(http)


# -- webhook receiver ------------------------------------------------------------------------


@dataclass
class Receiver:
    """Answers webhook posts from a script (status codes, or "hang" to stay silent until the
    test ends) and keeps what it received."""

    script: list[int | str] = field(default_factory=list)
    received: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[PeerServer]:
    async def hook(request: Request) -> Response:
        receiver: Receiver = request.app.state.receiver
        receiver.received.append((json.loads(await request.body()), dict(request.headers)))
        step = receiver.script.pop(0) if receiver.script else 200
        if step == "hang":
            await run_in_threadpool(receiver.released.wait, 30)
            return Response(b"late", status_code=200)
        return Response(b"ok" if step == 200 else b"nope", status_code=int(step))

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    app.state.receiver = Receiver()
    with PeerServer(app) as server:
        yield server


@pytest.fixture
def receiver(receiver_server: PeerServer) -> Iterator[Receiver]:
    state = Receiver(url=receiver_server.base_url + "/hook")
    app = receiver_server.app
    assert isinstance(app, Starlette)
    app.state.receiver = state
    yield state
    state.released.set()


# -- authentication and paths ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bearer", "body_key"),
    [
        (None, KEY),
        (OTHER_RUNNINGHUB_API_KEY, KEY),
        (KEY, None),
        ("wardrobe-test-runninghub-key-999", "wardrobe-test-runninghub-key-999"),
    ],
    ids=["no_bearer", "bearer_is_another_key", "no_body_key", "unknown_key"],
)
async def test_a_bad_or_mismatched_key_is_refused_802(
    runninghub_peer: ServedRunningHubPeer, client: Client, bearer: str | None, body_key: str | None
) -> None:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    body = {"apiKey": body_key} if body_key else {}
    response = await client.http.post(ACCOUNT_STATUS, json=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"code": 802, "msg": "APIKEY_UNAUTHORIZED", "data": None}
    assert [r.code for r in runninghub_peer.refusals] == [802]


async def test_the_right_key_reads_the_account(runninghub_peer: ServedRunningHubPeer, client: Client) -> None:
    answer = await client.call(ACCOUNT_STATUS)
    assert answer["code"] == 0
    assert answer["data"]["remainCoins"] == "100000"
    assert answer["data"]["currentTaskCounts"] == "0"
    assert runninghub_peer.calls[ACCOUNT_STATUS] == 1


@pytest.mark.parametrize("path", ["/task/openapi/nope", "/openapi/v2/query", "/"])
async def test_an_unknown_path_answers_412_token_invalid(
    runninghub_peer: ServedRunningHubPeer, client: Client, path: str
) -> None:
    assert await client.call(path) == {"code": 412, "msg": "TOKEN_INVALID", "data": None}
    assert runninghub_peer.calls[path] == 1


async def test_a_get_is_not_an_api_call(client: Client) -> None:
    response = await client.http.get(STATUS)
    assert response.json()["code"] == 412


# -- create and validation -------------------------------------------------------------------


async def test_create_answers_a_task_id_and_the_task_is_queued(
    runninghub_peer: ServedRunningHubPeer, client: Client
) -> None:
    answer = await client.create(nodeInfoList=[{"nodeId": "6", "fieldName": "text", "fieldValue": "a model in red"}])
    assert answer["code"] == 0
    assert answer["msg"] == "success"
    data = answer["data"]
    assert set(data) == {"netWssUrl", "taskId", "clientId", "taskStatus", "promptTips"}
    assert data["taskStatus"] == "QUEUED"
    assert data["taskId"].isdigit()
    assert len(data["taskId"]) == 19
    assert json.loads(data["promptTips"])["outputs_to_execute"] == ["9"]
    task = runninghub_peer.task(data["taskId"])
    assert task.node_info == [{"nodeId": "6", "fieldName": "text", "fieldValue": "a model in red"}]
    assert runninghub_peer.creates_by_key == {KEY: 1}
    assert runninghub_peer.creates_by_target == {MODEL_PHOTO_WORKFLOW_ID: 1}


async def test_unknown_workflow_is_380_and_unknown_webapp_901(client: Client) -> None:
    assert (await client.create("1950000000000099999"))["code"] == 380
    assert (await client.create(""))["code"] == 301
    answer = await client.call(AI_APP_RUN, {"webappId": "1950000000000099999", "nodeInfoList": []})
    assert answer == {"code": 901, "msg": "WEBAPP_NOT_EXISTS", "data": None}


async def test_a_workflow_never_run_on_the_web_is_810(runninghub_peer: ServedRunningHubPeer, client: Client) -> None:
    runninghub_peer.register_workflow(Workflow("1950000000000000003", {"6": {"text": "string"}}, ran_on_web=False))
    assert (await client.create("1950000000000000003"))["code"] == 810


@pytest.mark.parametrize(
    "node_info",
    [
        [{"nodeId": "99", "fieldName": "text", "fieldValue": "x"}],
        [{"nodeId": "6", "fieldName": "prompt", "fieldValue": "x"}],
        [{"nodeId": "6", "fieldName": "text", "fieldValue": 5}],
        [{"nodeId": "3", "fieldName": "seed", "fieldValue": "five"}],
        [{"nodeId": "3", "fieldName": "cfg", "fieldValue": True}],
        [{"nodeId": "10", "fieldName": "image", "fieldValue": "api/never-uploaded.png"}],
        [{"nodeId": "10", "fieldName": "image", "fieldValue": "https://example.com/a.png"}],
        [{"nodeId": "6", "fieldName": "text"}],
        {"nodeId": "6"},
    ],
    ids=[
        "unknown_node",
        "unknown_field",
        "string_as_int",
        "int_not_numeric",
        "bool_as_float",
        "image_not_uploaded",
        "image_url",
        "no_value",
        "not_a_list",
    ],
)
async def test_node_info_not_matching_the_workflow_is_803(
    runninghub_peer: ServedRunningHubPeer, client: Client, node_info: Any
) -> None:
    answer = await client.create(nodeInfoList=node_info)
    assert answer == {"code": 803, "msg": "APIKEY_INVALID_NODE_INFO", "data": None}
    assert runninghub_peer.tasks == {}
    assert len(runninghub_peer.refusal_reasons) == 1


async def test_node_info_values_of_the_right_types_are_accepted(client: Client) -> None:
    node_info = [
        {"nodeId": "3", "fieldName": "seed", "fieldValue": "42"},
        {"nodeId": "3", "fieldName": "steps", "fieldValue": 20},
        {"nodeId": 3, "fieldName": "cfg", "fieldValue": "7.5"},
        {"nodeId": "5", "fieldName": "width", "fieldValue": 768},
    ]
    assert (await client.create(nodeInfoList=node_info))["code"] == 0


async def test_image_fields_take_only_files_this_key_uploaded(
    runninghub_peer: ServedRunningHubPeer, client: Client
) -> None:
    name = (await client.upload(result_png("person")))["data"]["fileName"]
    mine = [{"nodeId": "12", "fieldName": "image", "fieldValue": name}]
    assert (await client.create(OUTFIT_CHANGE_WORKFLOW_ID, nodeInfoList=mine))["code"] == 0
    other = Client(client.http, OTHER_RUNNINGHUB_API_KEY)
    assert (await other.create(OUTFIT_CHANGE_WORKFLOW_ID, nodeInfoList=mine))["code"] == 803
    runninghub_peer.image_urls_allowed = True
    url = [{"nodeId": "12", "fieldName": "image", "fieldValue": "https://example.com/a.png"}]
    assert (await client.create(OUTFIT_CHANGE_WORKFLOW_ID, nodeInfoList=url))["code"] == 0


async def test_a_bad_webhook_url_or_instance_type_is_301(client: Client) -> None:
    assert (await client.create(webhookUrl="ftp://x/hook"))["code"] == 301
    assert (await client.create(instanceType="huge"))["code"] == 301
    assert (await client.create(instanceType="plus"))["code"] == 0


async def test_an_ai_app_runs_like_a_workflow(runninghub_peer: ServedRunningHubPeer, client: Client) -> None:
    answer = await client.call(
        AI_APP_RUN,
        {
            "webappId": MODEL_PHOTO_WEBAPP_ID,
            "nodeInfoList": [{"nodeId": "52", "fieldName": "prompt", "fieldValue": "studio"}],
        },
    )
    assert answer["code"] == 0
    task_id = answer["data"]["taskId"]
    runninghub_peer.succeed(task_id)
    outputs = await client.call(OUTPUTS, {"taskId": task_id})
    assert [f["nodeId"] for f in outputs["data"]] == ["60"]
    assert runninghub_peer.task(task_id).kind == "webapp"


# -- concurrency cap -------------------------------------------------------------------------


async def test_above_the_cap_create_answers_421_and_the_peak_is_recorded(
    runninghub_peer: ServedRunningHubPeer, client: Client
) -> None:
    ids = [await client.create_task() for _ in range(TEST_RUNNINGHUB_CAP)]
    assert await client.create() == {"code": 421, "msg": "TASK_QUEUE_MAXED", "data": None}
    refused = runninghub_peer.refusals_with(421)
    assert [(r.path, r.api_key, r.in_flight) for r in refused] == [(CREATE, KEY, TEST_RUNNINGHUB_CAP)]
    assert runninghub_peer.peak_in_flight[KEY] == TEST_RUNNINGHUB_CAP
    # Another key has a cap of its own.
    assert (await Client(client.http, OTHER_RUNNINGHUB_API_KEY).create())["code"] == 0
    # A running task still counts; an ended one frees its place.
    runninghub_peer.start(ids[0])
    assert (await client.create())["code"] == 421
    runninghub_peer.succeed(ids[0])
    await client.create_task()
    assert runninghub_peer.peak_in_flight[KEY] == TEST_RUNNINGHUB_CAP
    assert len(runninghub_peer.refusals_with(421, key=KEY)) == 2
    assert runninghub_peer.creates_by_key[KEY] == TEST_RUNNINGHUB_CAP + 1


async def test_concurrent_creates_never_exceed_the_cap(runninghub_peer: ServedRunningHubPeer, client: Client) -> None:
    runninghub_peer.set_cap(KEY, 2)
    answers = await asyncio.gather(*(client.create() for _ in range(10)))
    assert sorted(a["code"] for a in answers) == [0, 0] + [421] * 8
    assert runninghub_peer.peak_in_flight[KEY] == 2
    assert len(runninghub_peer.refusals_with(421)) == 8


# -- lifecycle and outputs -------------------------------------------------------------------


async def test_status_and_outputs_follow_the_lifecycle_to_success(
    runninghub_peer: ServedRunningHubPeer, client: Client
) -> None:
    task_id = await client.create_task()
    assert (await client.call(STATUS, {"taskId": task_id}))["data"] == "QUEUED"
    assert await client.call(OUTPUTS, {"taskId": task_id}) == {
        "code": 813,
        "msg": "APIKEY_TASK_IS_QUEUED",
        "data": None,
    }
    runninghub_peer.start(task_id)
    assert (await client.call(STATUS, {"taskId": task_id}))["data"] == "RUNNING"
    assert await client.call(OUTPUTS, {"taskId": task_id}) == {
        "code": 804,
        "msg": "APIKEY_TASK_IS_RUNNING",
        "data": None,
    }
    assert (await client.call(ACCOUNT_STATUS))["data"]["currentTaskCounts"] == "1"
    runninghub_peer.succeed(task_id)
    assert (await client.call(STATUS, {"taskId": task_id}))["data"] == "SUCCESS"
    outputs = await client.call(OUTPUTS, {"taskId": task_id})
    assert outputs["code"] == 0
    [entry] = outputs["data"]
    assert {"fileUrl", "fileType", "taskCostTime", "nodeId", "consumeCoins"} <= set(entry)
    assert entry["fileType"] == "png"
    assert entry["nodeId"] == "9"
    assert entry["consumeCoins"] == "10"
    assert entry["fileUrl"].startswith(runninghub_peer.base_url + "/files/")
    image = await client.http.get(entry["fileUrl"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (16, 16)
    assert image.content == result_png(task_id)
    account = (await client.call(ACCOUNT_STATUS))["data"]
    assert account == {**account, "remainCoins": "99990", "currentTaskCounts": "0"}


async def test_several_result_files_are_listed_and_served(
    runninghub_peer: ServedRunningHubPeer, client: Client
) -> None:
    task_id = await client.create_task()
    runninghub_peer.succeed(task_id, files=[b"\x89PNG-one", OutputFile(b"\x89PNG-two", node_id="15")])
    data = (await client.call(OUTPUTS, {"taskId": task_id}))["data"]
    assert [(f["nodeId"], f["fileType"]) for f in data] == [("9", "png"), ("15", "png")]
    assert [(await client.http.get(f["fileUrl"])).content for f in data] == [b"\x89PNG-one", b"\x89PNG-two"]
    missing = await client.http.get(f"{runninghub_peer.base_url}/files/{task_id}/nope.png")
    assert missing.status_code == 404


async def test_a_failed_task_answers_805_with_its_reason(runninghub_peer: ServedRunningHubPeer, client: Client) -> None:
    task_id = await client.create_task()
    runninghub_peer.fail(task_id, "Prompt outputs failed validation", node_id="3")
    assert (await client.call(STATUS, {"taskId": task_id}))["data"] == "FAILED"
    answer = await client.call(OUTPUTS, {"taskId": task_id})
    assert answer["code"] == 805
    assert answer["msg"] == "APIKEY_TASK_STATUS_ERROR"
    reason = answer["data"]["failedReason"]
    assert reason["node_id"] == "3"
    assert reason["exception_message"] == "Prompt outputs failed validation"
    assert reason["traceback"].startswith("Traceback")
    assert (await client.call(ACCOUNT_STATUS))["data"]["remainCoins"] == "100000"  # a failure costs nothing


async def test_an_unknown_or_foreign_task_is_807(client: Client) -> None:
    task_id = await client.create_task()
    for path in (STATUS, OUTPUTS, CANCEL):
        assert (await client.call(path, {"taskId": "1950000000000000000"}))["code"] == 807
        assert (await client.call(path, {"taskId": task_id}, key=OTHER_RUNNINGHUB_API_KEY))["code"] == 807
    assert (await client.call(WEBHOOK_DETAIL, {"taskId": "1950000000000000000"}))["code"] == 423


async def test_auto_moves_tasks_to_success_on_timers(runninghub_peer: ServedRunningHubPeer, client: Client) -> None:
    runninghub_peer.auto(queued_s=0.01, running_s=0.01)
    runninghub_peer.fail_next_tasks(1, "boom")
    first, second = await client.create_task(), await client.create_task()
    await runninghub_peer.wait_status(first, "FAILED")
    await runninghub_peer.wait_status(second, "SUCCESS")
    assert (await client.call(OUTPUTS, {"taskId": first}))["data"]["failedReason"]["exception_message"] == "boom"
    assert (await client.call(OUTPUTS, {"taskId": second}))["code"] == 0


async def test_the_http_hooks_drive_the_lifecycle(runninghub_peer: ServedRunningHubPeer, client: Client) -> None:
    task_id = await client.create_task()
    response = await client.http.post(f"/__peer/tasks/{task_id}/succeed")
    assert response.json() == {"taskId": task_id, "status": "SUCCESS"}
    assert (await client.http.post(f"/__peer/tasks/{task_id}/fail")).status_code == 409
    stats = (await client.http.get("/__peer/stats")).json()
    assert stats["tasks"]["SUCCESS"] == 1
    assert stats["creates_by_key"] == {KEY: 1}


# -- cancel ----------------------------------------------------------------------------------


async def test_cancel_ends_a_queued_or_running_task_and_frees_its_place(
    runninghub_peer: ServedRunningHubPeer, client: Client, receiver: Receiver
) -> None:
    queued = await client.create_task(webhookUrl=receiver.url)
    running = await client.create_task()
    runninghub_peer.start(running)
    for task_id in (queued, running):
        assert await client.call(CANCEL, {"taskId": task_id}) == {"code": 0, "msg": "success", "data": None}
        assert (await client.call(STATUS, {"taskId": task_id}))["data"] == "FAILED"
        assert (await client.call(OUTPUTS, {"taskId": task_id}))["code"] == 805
    assert runninghub_peer.in_flight(KEY) == 0
    assert (await client.call(CANCEL, {"taskId": queued}))["code"] == 805  # already ended
    with pytest.raises(ValueError, match="already ended"):
        runninghub_peer.succeed(queued)
    assert runninghub_peer.deliveries_for(queued) == []  # a cancelled task sends no webhook


# -- upload ----------------------------------------------------------------------------------


async def test_upload_answers_the_content_address_and_is_idempotent(
    runninghub_peer: ServedRunningHubPeer, client: Client
) -> None:
    content = result_png("garment")
    answer = await client.upload(content, "Garment.PNG")
    expected = f"api/{hashlib.sha256(content).hexdigest()}.png"
    assert answer == {"code": 0, "msg": "success", "data": {"fileName": expected, "fileType": "image"}}
    assert (await client.upload(content, "again.png"))["data"]["fileName"] == expected
    assert runninghub_peer.uploads[(KEY, expected)] == content
    assert (await client.upload(content, "noext"))["data"]["fileName"] == expected


async def test_an_upload_belongs_to_the_key_that_made_it(client: Client) -> None:
    """The same content from two keys has one name, usable by each; a key that never uploaded it
    cannot put it in a workflow (803)."""
    content = result_png("shared")
    name = (await client.upload(content))["data"]["fileName"]
    other = Client(client.http, OTHER_RUNNINGHUB_API_KEY)
    image = [{"nodeId": "10", "fieldName": "image", "fieldValue": name}]
    assert (await other.create(nodeInfoList=image))["code"] == 803
    assert (await other.upload(content))["data"]["fileName"] == name
    assert (await other.create(nodeInfoList=image))["code"] == 0
    assert (await client.create(nodeInfoList=image))["code"] == 0


async def test_upload_checks_its_key_type_and_size(runninghub_peer: ServedRunningHubPeer, client: Client) -> None:
    limit = runninghub_peer.max_upload_bytes
    assert limit == 10 * 1024 * 1024
    assert (await client.upload(b"x" * limit))["code"] == 0
    assert await client.upload(b"x" * (limit + 1)) == {"code": 809, "msg": "APIKEY_FILE_SIZE_EXCEEDED", "data": None}
    runninghub_peer.max_upload_bytes = 100
    assert (await client.upload(b"x" * 101))["code"] == 809
    assert (await client.upload(b""))["code"] == 808
    assert (await client.upload(b"x", file_type="pdf"))["code"] == 301
    mismatched = await client.http.post(
        UPLOAD,
        data={"apiKey": KEY, "fileType": "image"},
        files={"file": ("a.png", b"x")},
        headers={"Authorization": f"Bearer {OTHER_RUNNINGHUB_API_KEY}"},
    )
    assert mismatched.json()["code"] == 802


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "msg"),
    [(415, "TASK_INSTANCE_MAXED"), (416, "TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET"), (500, "UNKNOWN_ERROR")],
)
async def test_fail_next_answers_a_code_for_the_next_calls_only(
    runninghub_peer: ServedRunningHubPeer, client: Client, code: int, msg: str
) -> None:
    runninghub_peer.fail_next(CREATE, code, 2)
    assert await client.create() == {"code": code, "msg": msg, "data": None}
    assert (await client.create())["code"] == code
    assert (await client.call(ACCOUNT_STATUS))["code"] == 0  # another path is untouched
    assert runninghub_peer.tasks == {}
    assert (await client.create())["code"] == 0
    assert len(runninghub_peer.tasks) == 1


async def test_an_empty_wallet_refuses_creates_416(runninghub_peer: ServedRunningHubPeer, client: Client) -> None:
    runninghub_peer.set_coins(KEY, 0)
    assert (await client.create())["code"] == 416


async def test_a_lost_create_answer_still_creates_the_task(
    runninghub_peer: ServedRunningHubPeer, client: Client
) -> None:
    runninghub_peer.lose_next_answer(CREATE)
    response = await client.http.post(
        CREATE, json={"apiKey": KEY, "workflowId": MODEL_PHOTO_WORKFLOW_ID}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 502
    assert "taskId" not in response.text
    [task] = runninghub_peer.tasks_of(KEY)
    assert task.status == "QUEUED"
    assert runninghub_peer.in_flight(KEY) == 1
    assert runninghub_peer.answers_lost == 1
    assert (await client.create())["code"] == 0  # the next answer is not lost


async def test_a_silent_create_answer_times_the_client_out_but_creates_the_task(
    runninghub_peer: ServedRunningHubPeer, client: Client
) -> None:
    runninghub_peer.lose_next_answer(CREATE, mode="timeout")
    with pytest.raises(httpx.ReadTimeout):
        await client.http.post(
            CREATE,
            json={"apiKey": KEY, "workflowId": MODEL_PHOTO_WORKFLOW_ID},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=httpx.Timeout(10, read=0.3),
        )
    assert runninghub_peer.creates_by_key[KEY] == 1
    assert [t.status for t in runninghub_peer.tasks_of(KEY)] == ["QUEUED"]


async def test_the_json_api_format_lists_the_workflow_nodes(client: Client) -> None:
    answer = await client.call(JSON_API_FORMAT, {"workflowId": OUTFIT_CHANGE_WORKFLOW_ID})
    prompt = json.loads(answer["data"]["prompt"])
    assert prompt["12"]["class_type"] == "LoadImage"
    assert set(prompt) == {"12", "27", "31", "3"}
    assert (await client.call(JSON_API_FORMAT, {"workflowId": "1"}))["code"] == 380


# -- webhooks --------------------------------------------------------------------------------


async def test_a_finished_task_posts_task_end_with_the_outputs_as_a_string(
    runninghub_peer: ServedRunningHubPeer, client: Client, receiver: Receiver
) -> None:
    task_id = await client.create_task(webhookUrl=receiver.url)
    assert await client.call(WEBHOOK_DETAIL, {"taskId": task_id}) == {"code": 0, "msg": "success", "data": None}
    runninghub_peer.succeed(task_id)
    [delivery] = runninghub_peer.deliveries_for(task_id)
    attempt = await delivery.wait_delivered()
    assert (attempt.number, attempt.status) == (1, 200)
    [(body, headers)] = receiver.received
    assert set(body) == {"event", "taskId", "eventData"}
    assert body["event"] == "TASK_END"
    assert body["taskId"] == task_id
    assert isinstance(body["eventData"], str)
    assert json.loads(body["eventData"]) == await client.call(OUTPUTS, {"taskId": task_id})
    assert headers["content-type"] == "application/json"
    assert not any("sign" in name for name in headers)
    detail = (await client.call(WEBHOOK_DETAIL, {"taskId": task_id}))["data"]
    assert detail["callbackStatus"] == "SUCCESS"
    assert detail["retryCount"] == 0
    assert detail["taskId"] == task_id
    assert detail["webhookUrl"] == receiver.url
    assert detail["eventData"] == body["eventData"]
    assert KEY not in json.dumps(detail)  # the key is masked


async def test_a_failed_task_posts_its_805_answer(
    runninghub_peer: ServedRunningHubPeer, client: Client, receiver: Receiver
) -> None:
    task_id = await client.create_task(webhookUrl=receiver.url)
    runninghub_peer.fail(task_id, "boom")
    await runninghub_peer.deliveries_for(task_id)[0].wait_delivered()
    event_data = json.loads(receiver.received[0][0]["eventData"])
    assert event_data["code"] == 805
    assert event_data["data"]["failedReason"]["exception_message"] == "boom"


async def test_non_2xx_answers_are_retried_until_one_is_2xx(
    runninghub_peer: ServedRunningHubPeer, client: Client, receiver: Receiver
) -> None:
    receiver.script = [500, 404]
    task_id = await client.create_task(webhookUrl=receiver.url)
    runninghub_peer.succeed(task_id)
    delivery = runninghub_peer.deliveries_for(task_id)[0]
    await delivery.wait_delivered()
    assert [(a.number, a.status) for a in delivery.attempts] == [(1, 500), (2, 404), (3, 200)]
    assert len(receiver.received) == 3
    assert all(body == receiver.received[0][0] for body, _ in receiver.received)
    detail = (await client.call(WEBHOOK_DETAIL, {"taskId": task_id}))["data"]
    assert (detail["callbackStatus"], detail["retryCount"]) == ("SUCCESS", 2)


async def test_after_three_retries_it_gives_up_and_retry_webhook_sends_again(
    runninghub_peer: ServedRunningHubPeer, client: Client, receiver: Receiver
) -> None:
    receiver.script = [503, 503, 503, 503]
    task_id = await client.create_task(webhookUrl=receiver.url)
    runninghub_peer.succeed(task_id)
    attempts = await runninghub_peer.deliveries_for(task_id)[0].wait_finished()
    assert [a.status for a in attempts] == [503, 503, 503, 503]
    detail = (await client.call(WEBHOOK_DETAIL, {"taskId": task_id}))["data"]
    assert (detail["callbackStatus"], detail["retryCount"]) == ("FAILED", 3)
    assert detail["callbackResponse"].startswith("503")
    assert (await client.call(RETRY_WEBHOOK, {"webhookId": detail["id"]}))["code"] == 0
    again = runninghub_peer.deliveries_for(task_id)[1]
    await again.wait_delivered()
    assert len(receiver.received) == 5
    detail = (await client.call(WEBHOOK_DETAIL, {"taskId": task_id}))["data"]
    assert (detail["callbackStatus"], detail["retryCount"]) == ("SUCCESS", 4)
    assert (await client.call(RETRY_WEBHOOK, {"webhookId": "1"}))["code"] == 423
    other = Client(client.http, OTHER_RUNNINGHUB_API_KEY)
    assert (await other.call(RETRY_WEBHOOK, {"webhookId": detail["id"]}))["code"] == 423


async def test_an_answer_later_than_the_timeout_counts_as_failed(
    runninghub_peer: ServedRunningHubPeer, client: Client, receiver: Receiver
) -> None:
    runninghub_peer.webhook_timeout = 1.0  # the hanging receiver never answers; the retry is answered at once
    receiver.script = ["hang"]
    task_id = await client.create_task(webhookUrl=receiver.url)
    runninghub_peer.succeed(task_id)
    delivery = runninghub_peer.deliveries_for(task_id)[0]
    await delivery.wait_delivered()
    assert [(a.status, a.error) for a in delivery.attempts] == [(None, "timeout"), (200, "")]
    assert runninghub_peer.webhook_event(task_id).retry_count == 1


async def test_without_delays_a_retry_waits_for_the_test(
    runninghub_peer: ServedRunningHubPeer, client: Client, receiver: Receiver
) -> None:
    runninghub_peer.webhook_retry_delays = None
    receiver.script = [500]
    task_id = await client.create_task(webhookUrl=receiver.url)
    runninghub_peer.succeed(task_id)
    delivery = runninghub_peer.deliveries_for(task_id)[0]
    await delivery.wait_attempts(1)
    assert (await client.call(WEBHOOK_DETAIL, {"taskId": task_id}))["data"]["callbackStatus"] == "FAILED"
    assert len(delivery.attempts) == 1
    assert not delivery.finished
    delivery.nudge()
    await delivery.wait_delivered()
    assert [a.status for a in delivery.attempts] == [500, 200]


async def test_held_webhooks_go_out_on_release_then_duplicates_and_stale_events(
    runninghub_peer: ServedRunningHubPeer, client: Client, receiver: Receiver
) -> None:
    runninghub_peer.hold_webhooks = True
    task_id = await client.create_task(webhookUrl=receiver.url)
    runninghub_peer.succeed(task_id)
    [held] = runninghub_peer.deliveries_for(task_id)
    assert not held.started
    assert receiver.received == []
    assert runninghub_peer.release_webhooks() == [held]
    await held.wait_delivered()
    await runninghub_peer.duplicate_webhook(task_id).wait_delivered()
    await runninghub_peer.send_stale_webhook(task_id).wait_delivered()
    await runninghub_peer.wait_idle()
    bodies = [body for body, _ in receiver.received]
    assert bodies[0] == bodies[1]
    assert json.loads(bodies[0]["eventData"])["code"] == 0
    assert bodies[2]["taskId"] == task_id
    assert bodies[2]["event"] == "TASK_END"
    assert json.loads(bodies[2]["eventData"]) == {"code": 804, "msg": "APIKEY_TASK_IS_RUNNING", "data": None}
    # The duplicate is recorded with the event; the made-up stale one is not.
    assert len(runninghub_peer.webhook_event(task_id).attempts) == 2


async def test_auto_tasks_send_their_webhooks(
    runninghub_peer: ServedRunningHubPeer, client: Client, receiver: Receiver
) -> None:
    runninghub_peer.auto()
    task_id = await client.create_task(webhookUrl=receiver.url)
    await runninghub_peer.wait_for(lambda: bool(runninghub_peer.deliveries_for(task_id)))
    await runninghub_peer.deliveries_for(task_id)[0].wait_delivered()
    assert receiver.received[0][0]["taskId"] == task_id
