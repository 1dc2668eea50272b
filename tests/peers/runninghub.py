"""Local peer of the RunningHub OpenAPI v1 (design/protocols.md §7).

What it checks, as RunningHub does: every API call is ``POST`` JSON (the upload multipart) with
``Authorization: Bearer <key>`` equal to the body's ``apiKey`` and a known key (else 802); an
unknown path answers 412 ``TOKEN_INVALID``; ``workflowId``/``webappId`` must be registered (380/901);
``nodeInfoList`` must match the registered ``{nodeId: {fieldName: type}}`` and image fields must
name a file this key uploaded (else 803). Every answer is HTTP 200 ``{code, msg, data}``.

What it keeps: tasks per key. QUEUED and RUNNING tasks count against the key's cap; one more is
refused ``{"code":421,"msg":"TASK_QUEUE_MAXED","data":null}`` (recorded, with the peak of tasks
admitted at once). Tasks move QUEUED → RUNNING → SUCCESS/FAILED when the test says (``start``,
``succeed``, ``fail``) or on timers (``auto``); ``/outputs`` answers 813 while queued, 804 while
running, 805 with ``failedReason`` once failed (cancelled too), else the file list. Result files
are served by the peer under ``/files/…``. Success spends ``coins_per_task`` from the key's wallet;
an empty wallet refuses creates with 416.

Choices where the documentation is silent (the adapter should not depend on them): ``taskCostTime``,
``consumeCoins``, ``remainCoins`` and ``currentTaskCounts`` are strings as in the documented
examples; an unknown or foreign ``taskId`` answers 807 on status/outputs/cancel and 423 on
``getWebhookDetail``; cancelling a finished task answers 805; a cancelled task reads FAILED and sends
no webhook; a task without webhook (or not yet ended) has ``getWebhookDetail`` data ``null``.

Test hooks (also listed in ``RunningHubPeer``): ``fail_next`` answers a code instead of running the
next calls of a path; ``lose_next_answer`` runs the call and then answers 502 or nothing; webhooks
can be held, duplicated, or followed by a stale event. ``POST /__peer/…`` offers the lifecycle to
clients outside this process.

Requests are handled synchronously under one lock shared with the test hooks.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from tests.peers.delivery import Changes
from tests.peers.runninghub_model import (
    ACCOUNT_STATUS,
    AI_APP_RUN,
    CANCEL,
    CREATE,
    DEFAULT_MAX_UPLOAD_BYTES,
    FAILED,
    FILES_PREFIX,
    JSON_API_FORMAT,
    MESSAGES,
    OUTPUTS,
    QUEUED,
    RETRY_WEBHOOK,
    RUNNING,
    STATUS,
    SUCCESS,
    UPLOAD,
    UPLOAD_FILE_TYPES,
    WEBHOOK_DETAIL,
    Answer,
    Fault,
    FieldType,
    LostMode,
    NodeFields,
    OutputFile,
    PeerKey,
    PeerTask,
    Refusal,
    RunningHubError,
    ServedFile,
    WebApp,
    Workflow,
    envelope,
    json_bytes,
    parse_id,
    result_png,
)
from tests.peers.runninghub_webhooks import (
    DEFAULT_WEBHOOK_TIMEOUT,
    SCALED_WEBHOOK_RETRY_DELAYS,
    Courier,
    Delivery,
    WebhookEvent,
)

__all__ = [
    "ACCOUNT_STATUS",
    "AI_APP_RUN",
    "CANCEL",
    "CREATE",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "FAILED",
    "FILES_PREFIX",
    "JSON_API_FORMAT",
    "MESSAGES",
    "OUTPUTS",
    "QUEUED",
    "RETRY_WEBHOOK",
    "RUNNING",
    "STATUS",
    "SUCCESS",
    "UPLOAD",
    "UPLOAD_FILE_TYPES",
    "WEBHOOK_DETAIL",
    "Answer",
    "Fault",
    "FieldType",
    "LostMode",
    "NodeFields",
    "OutputFile",
    "PeerKey",
    "PeerTask",
    "Refusal",
    "RunningHubError",
    "RunningHubPeer",
    "ServedFile",
    "WebApp",
    "Workflow",
    "envelope",
    "json_bytes",
    "parse_id",
    "result_png",
]

_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class RunningHubPeer:
    """State and behaviour of RunningHub; the Starlette app only moves bytes in and out.

    Set-up: ``add_key``, ``set_cap``, ``set_coins``, ``register_workflow``, ``register_webapp``.
    Lifecycle: ``start``, ``succeed``, ``fail``, ``auto``/``manual``, ``fail_next_tasks``.
    Faults: ``fail_next``, ``lose_next_answer``, ``release_held_answers``.
    Webhooks: ``hold_webhooks``/``release_webhooks``, ``webhook_event``, ``deliveries_for``,
    ``duplicate_webhook``, ``send_stale_webhook``, ``post_event``, ``wait_idle``.
    Reading: ``task``, ``tasks_of``, ``in_flight``, ``peak_in_flight``, ``refusals_with``, ``calls``,
    ``creates_by_key``, ``creates_by_target``, ``wait_for``, ``wait_status``.
    """

    def __init__(
        self,
        *,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT,
        webhook_retry_delays: tuple[float, ...] | None = SCALED_WEBHOOK_RETRY_DELAYS,
        image_urls_allowed: bool = False,
        coins_per_task: int = 10,
        file_base_url: str | None = None,
    ) -> None:
        self.max_upload_bytes = max_upload_bytes
        self.webhook_timeout = webhook_timeout
        self.webhook_retry_delays = webhook_retry_delays  # None: retries only when nudged
        self.image_urls_allowed = image_urls_allowed  # image fields may also be http(s) URLs
        self.coins_per_task = coins_per_task
        self.file_base_url = file_base_url  # where fileUrl points; default: the socket answering
        self.keys: dict[str, PeerKey] = {}
        self.workflows: dict[str, Workflow] = {}
        self.webapps: dict[str, WebApp] = {}
        self.tasks: dict[str, PeerTask] = {}
        # (owner key, fileName) -> content: each account has its own files; the same content
        # uploaded by two keys gets the same name, usable by each of them only.
        self.uploads: dict[tuple[str, str], bytes] = {}
        self.calls: Counter[str] = Counter()  # every request, by path (unknown ones too)
        self.creates_by_key: Counter[str] = Counter()  # tasks admitted
        self.creates_by_target: Counter[str] = Counter()  # tasks admitted, by workflowId/webappId
        self.peak_in_flight: Counter[str] = Counter()  # most QUEUED+RUNNING tasks at once, by key
        self.refusals: list[Refusal] = []
        self.refusal_reasons: list[str] = []  # why each 301/803 was given, for debugging a client
        self.answers_lost = 0
        self.held_answers_released = threading.Event()
        self.webhook_events: dict[str, WebhookEvent] = {}  # by taskId
        self.deliveries: list[Delivery] = []
        self.hold_webhooks = False  # True: completions queue their webhook until release_webhooks
        self.changes = Changes()
        self.courier = Courier()
        self._held_deliveries: list[Delivery] = []
        self._faults: list[Fault] = []
        self._lost: list[tuple[str, LostMode]] = []
        self._auto: tuple[float, float] | None = None
        self._auto_failures: list[str] = []
        self._lock = threading.RLock()
        self._serial = itertools.count(1)
        self._id_base = 1_950_000_000_000_000_000 + secrets.randbelow(10**12) * 10**6

    # -- set-up --------------------------------------------------------------------------------

    def add_key(self, key: str, *, cap: int = 1, coins: int = 100_000) -> PeerKey:
        with self._lock:
            self.keys[key] = PeerKey(key, cap, coins)
            return self.keys[key]

    def set_cap(self, key: str, cap: int) -> None:
        with self._lock:
            self.keys[key].cap = cap

    def set_coins(self, key: str, coins: int) -> None:
        with self._lock:
            self.keys[key].coins = coins

    def register_workflow(self, workflow: Workflow) -> None:
        with self._lock:
            self.workflows[workflow.workflow_id] = workflow

    def register_webapp(self, webapp: WebApp) -> None:
        with self._lock:
            self.webapps[webapp.webapp_id] = webapp

    # -- faults --------------------------------------------------------------------------------

    def fail_next(self, path: str, code: int, n: int = 1, *, msg: str | None = None, data: Any = None) -> None:
        """Answer the next ``n`` authenticated calls of ``path`` with ``code`` (415, 416, 500…)
        instead of running them."""
        with self._lock:
            self._faults.extend(Fault(path, code, msg, data) for _ in range(n))

    def lose_next_answer(self, path: str = CREATE, *, mode: LostMode = "bad_gateway") -> None:
        """Run the next successful call of ``path``, then lose its answer: ``bad_gateway`` answers
        HTTP 502 with no JSON, ``timeout`` keeps the connection silent until the caller gives up
        (and the peer is released). Either way the caller cannot know the taskId."""
        with self._lock:
            self._lost.append((path, mode))

    def release_held_answers(self) -> None:
        self.held_answers_released.set()

    # -- lifecycle -----------------------------------------------------------------------------

    def auto(self, queued_s: float = 0.0, running_s: float = 0.0) -> None:
        """From now on, tasks created start after ``queued_s`` and succeed ``running_s`` later
        (real time, on the peer's own thread)."""
        with self._lock:
            self._auto = (queued_s, running_s)

    def manual(self) -> None:
        with self._lock:
            self._auto = None

    def fail_next_tasks(self, n: int = 1, message: str = "CUDA out of memory") -> None:
        """The next ``n`` tasks that ``auto`` finishes fail with ``message``."""
        with self._lock:
            self._auto_failures.extend([message] * n)

    def start(self, task_id: str) -> PeerTask:
        with self._lock:
            task = self.tasks[task_id]
            if task.status != QUEUED:
                raise ValueError(f"task {task_id} is {task.status}, not QUEUED")
            self._start(task)
            return task

    def succeed(self, task_id: str, files: Sequence[OutputFile | bytes] | None = None) -> PeerTask:
        """End the task in SUCCESS (starting it first if queued); ``files`` default to one PNG
        from the output node. Sends the webhook if the task has one."""
        with self._lock:
            task = self._unfinished(task_id)
            if task.status == QUEUED:
                self._start(task)
            given = files if files is not None else [OutputFile(result_png(task_id))]
            for index, item in enumerate(given, start=1):
                out = item if isinstance(item, OutputFile) else OutputFile(item)
                name = f"ComfyUI_{index:05d}_.{out.file_type}"
                url = f"{task.file_base_url}{FILES_PREFIX}/{task.task_id}/{name}"
                task.files.append(ServedFile(name, url, out.content, out.file_type, out.node_id or task.output_node_id))
            key = self.keys.get(task.api_key)
            task.consume_coins = self.coins_per_task
            if key is not None:
                key.coins -= self.coins_per_task
            self._end(task, SUCCESS)
            return task

    def fail(
        self,
        task_id: str,
        message: str = "CUDA out of memory",
        *,
        node_id: str | None = None,
        exception_type: str = "RuntimeError",
        traceback: str = "Traceback (most recent call last):\n  ...\nRuntimeError",
    ) -> PeerTask:
        """End the task in FAILED (starting it first if queued) with this ``failedReason``."""
        with self._lock:
            task = self._unfinished(task_id)
            if task.status == QUEUED:
                self._start(task)
            task.failed_reason = {
                "node_name": "KSampler",
                "exception_message": message,
                "node_id": node_id or task.output_node_id,
                "traceback": traceback,
                "exception_type": exception_type,
            }
            self._end(task, FAILED)
            return task

    # -- reading -------------------------------------------------------------------------------

    def task(self, task_id: str) -> PeerTask:
        with self._lock:
            return self.tasks[task_id]

    def tasks_of(self, key: str) -> list[PeerTask]:
        with self._lock:
            return [t for t in self.tasks.values() if t.api_key == key]

    def in_flight(self, key: str) -> int:
        with self._lock:
            return sum(1 for t in self.tasks.values() if t.api_key == key and not t.finished)

    def refusals_with(self, code: int, *, key: str | None = None, path: str | None = None) -> list[Refusal]:
        with self._lock:
            return [
                r
                for r in self.refusals
                if r.code == code and (key is None or r.api_key == key) and (path is None or r.path == path)
            ]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 30.0) -> None:
        await self.changes.wait_for(predicate, within)

    async def wait_status(self, task_id: str, status: str, within: float = 30.0) -> PeerTask:
        await self.changes.wait_for(lambda: task_id in self.tasks and self.tasks[task_id].status == status, within)
        return self.tasks[task_id]

    # -- webhooks ------------------------------------------------------------------------------

    def webhook_event(self, task_id: str) -> WebhookEvent:
        with self._lock:
            return self.webhook_events[task_id]

    def deliveries_for(self, task_id: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.task_id == task_id]

    def release_webhooks(self) -> list[Delivery]:
        """Start the webhooks held back while ``hold_webhooks`` was set, in completion order."""
        with self._lock:
            held, self._held_deliveries = self._held_deliveries, []
            self.hold_webhooks = False
        for delivery in held:
            delivery.start()
        return held

    def duplicate_webhook(self, task_id: str, *, url: str | None = None) -> Delivery:
        """Post the task's TASK_END event again (same body), as a vendor retry would."""
        event = self.webhook_event(task_id)
        return self._deliver(event.url if url is None else url, self._event_body(task_id, event.event_data), event)

    def send_stale_webhook(self, task_id: str, state: str = RUNNING, *, url: str | None = None) -> Delivery:
        """Post a TASK_END whose ``eventData`` is an earlier answer (804 running, 813 queued), as a
        delayed or reordered delivery would arrive after the real one."""
        code = {RUNNING: 804, QUEUED: 813}[state]
        return self.post_event(task_id, envelope(code), url=url)

    def post_event(self, task_id: str, event_data: Mapping[str, Any] | str, *, url: str | None = None) -> Delivery:
        """Post a made-up TASK_END for ``task_id`` (not recorded for getWebhookDetail)."""
        with self._lock:
            target = url or self.tasks[task_id].webhook_url
        if not target:
            raise ValueError(f"task {task_id} has no webhookUrl; pass url=")
        text = event_data if isinstance(event_data, str) else json.dumps(event_data, ensure_ascii=False)
        return self._deliver(target, self._event_body(task_id, text), None)

    async def wait_idle(self, within: float = 30.0) -> None:
        """Every delivery started so far has delivered or given up."""
        await self.changes.wait_for(lambda: all(d.finished for d in list(self.deliveries) if d.started), within)

    def close(self) -> None:
        """Stop the courier (timers, deliveries) and let go of any swallowed answer."""
        self.release_held_answers()
        self.courier.close()

    def _deliver(self, url: str, body: dict[str, Any], event: WebhookEvent | None, *, start: bool = True) -> Delivery:
        delivery = Delivery(
            url=url,
            body=body,
            event=event,
            changes=self.changes,
            courier=self.courier,
            timeout=self.webhook_timeout,
            delays=self.webhook_retry_delays,
        )
        with self._lock:
            self.deliveries.append(delivery)
        if start:
            delivery.start()
        return delivery

    @staticmethod
    def _event_body(task_id: str, event_data: str) -> dict[str, Any]:
        return {"event": "TASK_END", "taskId": task_id, "eventData": event_data}

    # -- lifecycle internals (under the lock) --------------------------------------------------

    def _unfinished(self, task_id: str) -> PeerTask:
        task = self.tasks[task_id]
        if task.finished:
            raise ValueError(f"task {task_id} already ended {task.status}")
        return task

    def _start(self, task: PeerTask) -> None:
        task.status = RUNNING
        task.started_at = time.monotonic()
        self.changes.fire()
        if self._auto is not None:
            task_id = task.task_id
            self.courier.call_later(self._auto[1], lambda: self._auto_finish(task_id))

    def _end(self, task: PeerTask, status: str) -> None:
        task.status = status
        task.finished_at = time.monotonic()
        if task.webhook_url and not task.cancelled:
            text = json.dumps(self.outputs_answer(task), ensure_ascii=False, separators=(",", ":"))
            event = WebhookEvent(
                str(self._id_base + 500_000 + next(self._serial)), task.task_id, task.api_key, task.webhook_url, text
            )
            self.webhook_events[task.task_id] = event
            delivery = self._deliver(event.url, self._event_body(task.task_id, text), event, start=False)
            if self.hold_webhooks:
                self._held_deliveries.append(delivery)
            else:
                delivery.start()
        self.changes.fire()

    def _auto_start(self, task_id: str) -> None:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is not None and task.status == QUEUED:
                self._start(task)

    def _auto_finish(self, task_id: str) -> None:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None or task.status != RUNNING:
                return
            if self._auto_failures:
                self.fail(task_id, self._auto_failures.pop(0))
            else:
                self.succeed(task_id)

    def outputs_answer(self, task: PeerTask) -> dict[str, Any]:
        """What ``/outputs`` answers for the task now (also the webhook's ``eventData``)."""
        if task.status == QUEUED:
            return envelope(813)
        if task.status == RUNNING:
            return envelope(804)
        if task.status == FAILED:
            return envelope(805, {"failedReason": task.failed_reason})
        return envelope(
            0,
            [
                {
                    "fileUrl": f.url,
                    "fileType": f.file_type,
                    "taskCostTime": str(task.cost_seconds),
                    "nodeId": f.node_id,
                    "thirdPartyConsumeMoney": None,
                    "consumeMoney": None,
                    "consumeCoins": str(task.consume_coins),
                }
                for f in task.files
            ],
        )

    def served_file(self, task_id: str, name: str) -> ServedFile | None:
        with self._lock:
            task = self.tasks.get(task_id)
            return next((f for f in task.files if f.name == name), None) if task else None

    # -- protocol ------------------------------------------------------------------------------

    def handle(
        self,
        path: str,
        *,
        authorization: str | None,
        payload: Mapping[str, Any] | None,
        base_url: str,
        upload: tuple[str, bytes] | None = None,
    ) -> Answer:
        """Answer one API call. ``payload`` is the JSON body (the form fields for an upload; None
        when unreadable); ``base_url`` is where this server answers, for result URLs."""
        with self._lock:
            self.calls[path] += 1
            api_key = str(payload.get("apiKey", "")) if payload else ""
            try:
                handler = _HANDLERS.get(path)
                if handler is None:
                    raise RunningHubError(412, reason=f"no such path {path}")
                if payload is None:
                    raise RunningHubError(301, reason="the body is not a JSON object")
                key = self._authenticate(authorization, payload)
                fault = next((f for f in self._faults if f.path == path), None)
                if fault is not None:
                    self._faults.remove(fault)
                    raise RunningHubError(fault.code, fault.data, fault.msg, reason="fail_next")
                data = handler(self, key, payload, base_url, upload)
            except RunningHubError as error:
                self.refusals.append(Refusal(path, api_key, error.code, self.in_flight(api_key)))
                if error.reason and error.code in (301, 803, 809):
                    self.refusal_reasons.append(f"{path} {error.code}: {error.reason}")
                return Answer(200, json_bytes(envelope(error.code, error.data, error.msg)))
            lost = next((mode for p, mode in self._lost if p == path), None)
            if lost is not None:
                self._lost.remove((path, lost))
                self.answers_lost += 1
                if lost == "timeout":
                    return Answer(504, b"", "text/plain", hold=True)
                return Answer(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
            return Answer(200, json_bytes(envelope(0, data)))

    def _authenticate(self, authorization: str | None, payload: Mapping[str, Any]) -> PeerKey:
        body_key = payload.get("apiKey")
        scheme, _, bearer = (authorization or "").partition(" ")
        if not isinstance(body_key, str) or not body_key or scheme != "Bearer" or bearer.strip() != body_key:
            raise RunningHubError(802, reason="Bearer token missing or not the body's apiKey")
        key = self.keys.get(body_key)
        if key is None:
            raise RunningHubError(802, reason="unknown apiKey")
        return key

    def _find_task(self, key: PeerKey, payload: Mapping[str, Any], missing: int) -> PeerTask:
        raw = payload.get("taskId")
        task = self.tasks.get(str(raw)) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
        if task is None or task.api_key != key.key:
            raise RunningHubError(missing, reason=f"no task {raw!r} for this key")
        return task

    def _create(self, key: PeerKey, payload: Mapping[str, Any], base: str, _: Any) -> dict[str, Any]:
        workflow_id = parse_id(payload.get("workflowId"))
        if workflow_id is None:
            raise RunningHubError(301, reason="workflowId missing")
        workflow = self.workflows.get(workflow_id)
        if workflow is None:
            raise RunningHubError(380, reason=f"no workflow {workflow_id}")
        if not workflow.ran_on_web:
            raise RunningHubError(810)
        node_info = self._check_node_info(key, workflow.nodes, payload.get("nodeInfoList"))
        return self._admit(key, CREATE, "workflow", workflow_id, workflow.output_node_id, node_info, payload, base)

    def _run_app(self, key: PeerKey, payload: Mapping[str, Any], base: str, _: Any) -> dict[str, Any]:
        webapp_id = parse_id(payload.get("webappId"))
        if webapp_id is None:
            raise RunningHubError(301, reason="webappId missing")
        app = self.webapps.get(webapp_id)
        if app is None:
            raise RunningHubError(901, reason=f"no webapp {webapp_id}")
        node_info = self._check_node_info(key, app.nodes, payload.get("nodeInfoList"))
        return self._admit(key, AI_APP_RUN, "webapp", webapp_id, app.output_node_id, node_info, payload, base)

    def _check_node_info(self, key: PeerKey, nodes: NodeFields, raw: Any) -> list[dict[str, Any]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise RunningHubError(803, reason="nodeInfoList is not a list")
        checked = []
        for item in raw:
            if not isinstance(item, dict) or not {"nodeId", "fieldName", "fieldValue"} <= set(item):
                raise RunningHubError(803, reason=f"not a node info: {item!r}")
            node_id, name, value = parse_id(item["nodeId"]), item["fieldName"], item["fieldValue"]
            fields = nodes.get(node_id or "")
            if fields is None:
                raise RunningHubError(803, reason=f"no node {item['nodeId']!r}")
            if not isinstance(name, str) or name not in fields:
                raise RunningHubError(803, reason=f"node {node_id} has no field {name!r}")
            if not self._value_fits(key, fields[name], value):
                raise RunningHubError(803, reason=f"node {node_id}.{name}: {value!r} is not a {fields[name]}")
            checked.append({"nodeId": node_id, "fieldName": name, "fieldValue": value})
        return checked

    def _value_fits(self, key: PeerKey, kind: FieldType, value: Any) -> bool:
        if kind == "string":
            return isinstance(value, str)
        if kind == "bool":
            return isinstance(value, bool) or value in ("true", "false")
        if isinstance(value, bool):
            return False
        if kind == "int":
            return isinstance(value, int) or (isinstance(value, str) and bool(_INT.match(value)))
        if kind == "float":
            return isinstance(value, (int, float)) or (isinstance(value, str) and bool(_FLOAT.match(value)))
        # image: a file this key uploaded (a LoadImage field), or a URL where allowed
        if not isinstance(value, str):
            return False
        if value.startswith(("http://", "https://")):
            return self.image_urls_allowed
        return (key.key, value) in self.uploads

    def _admit(
        self,
        key: PeerKey,
        path: str,
        kind: Literal["workflow", "webapp"],
        target_id: str,
        output_node_id: str,
        node_info: list[dict[str, Any]],
        payload: Mapping[str, Any],
        base: str,
    ) -> dict[str, Any]:
        webhook = payload.get("webhookUrl")
        if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))):
            raise RunningHubError(301, reason="webhookUrl is not an http(s) URL")
        if payload.get("instanceType") not in (None, "", "default", "plus"):
            raise RunningHubError(301, reason="instanceType must be plus")
        if key.coins <= 0:
            raise RunningHubError(416)
        if self.in_flight(key.key) >= key.cap:
            raise RunningHubError(421)
        task_id = str(self._id_base + next(self._serial))
        task = PeerTask(
            task_id=task_id,
            api_key=key.key,
            kind=kind,
            target_id=target_id,
            node_info=node_info,
            webhook_url=webhook or None,
            output_node_id=output_node_id,
            file_base_url=(self.file_base_url or base).rstrip("/"),
        )
        self.tasks[task_id] = task
        self.creates_by_key[key.key] += 1
        self.creates_by_target[target_id] += 1
        self.peak_in_flight[key.key] = max(self.peak_in_flight[key.key], self.in_flight(key.key))
        if self._auto is not None:
            self.courier.call_later(self._auto[0], lambda: self._auto_start(task_id))
        self.changes.fire()
        host = base.split("://", 1)[-1]
        tips: dict[str, Any] = {"result": True, "error": None, "node_errors": {}}
        tips["outputs_to_execute"] = [output_node_id]
        return {
            "netWssUrl": f"ws://{host}/ws/c_instance?c_host={host}&clientId={task.client_id}",
            "taskId": task_id,
            "clientId": task.client_id,
            "taskStatus": QUEUED,
            "promptTips": json.dumps(tips),
        }

    def _status(self, key: PeerKey, payload: Mapping[str, Any], _: str, __: Any) -> str:
        return self._find_task(key, payload, 807).status

    def _outputs(self, key: PeerKey, payload: Mapping[str, Any], _: str, __: Any) -> Any:
        answer = self.outputs_answer(self._find_task(key, payload, 807))
        if answer["code"] != 0:
            raise RunningHubError(answer["code"], answer["data"])
        return answer["data"]

    def _cancel(self, key: PeerKey, payload: Mapping[str, Any], _: str, __: Any) -> None:
        task = self._find_task(key, payload, 807)
        if task.finished:
            raise RunningHubError(805, reason=f"task already {task.status}")
        task.cancelled = True
        task.failed_reason = {
            "node_name": "",
            "exception_message": "Task cancelled by user",
            "node_id": "",
            "traceback": "",
            "exception_type": "InterruptProcessingException",
        }
        self._end(task, FAILED)

    def _account(self, key: PeerKey, _: Mapping[str, Any], __: str, ___: Any) -> dict[str, Any]:
        return {
            "remainCoins": str(key.coins),
            "currentTaskCounts": str(self.in_flight(key.key)),
            "remainMoney": None,
            "currency": None,
            "apiType": "NORMAL",
        }

    def _upload(self, key: PeerKey, payload: Mapping[str, Any], _: str, upload: tuple[str, bytes] | None) -> Any:
        file_type = payload.get("fileType")
        if upload is None or file_type not in UPLOAD_FILE_TYPES:
            raise RunningHubError(301, reason="upload needs a file and fileType image|video|audio|input")
        filename, content = upload
        if len(content) > self.max_upload_bytes:
            raise RunningHubError(809, reason=f"{len(content)} bytes > {self.max_upload_bytes}")
        if not content:
            raise RunningHubError(808, reason="empty file")
        suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        ext = suffix if re.fullmatch(r"[a-z0-9]{1,5}", suffix) else UPLOAD_FILE_TYPES[str(file_type)]
        name = f"api/{hashlib.sha256(content).hexdigest()}.{ext}"
        self.uploads[(key.key, name)] = content
        return {"fileName": name, "fileType": file_type}

    def _webhook_detail(self, key: PeerKey, payload: Mapping[str, Any], _: str, __: Any) -> Any:
        task = self._find_task(key, payload, 423)
        event = self.webhook_events.get(task.task_id)
        return None if event is None else event.detail()

    def _retry_webhook(self, key: PeerKey, payload: Mapping[str, Any], _: str, __: Any) -> None:
        webhook_id = parse_id(payload.get("webhookId"))
        event = next((e for e in self.webhook_events.values() if e.id == webhook_id and e.api_key == key.key), None)
        if event is None:
            raise RunningHubError(423, reason=f"no webhook event {webhook_id}")
        url = payload.get("webhookUrl")
        if url is not None:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise RunningHubError(301, reason="webhookUrl is not an http(s) URL")
            event.url = url
        self._deliver(event.url, self._event_body(event.task_id, event.event_data), event)

    def _json_api_format(self, _: PeerKey, payload: Mapping[str, Any], __: str, ___: Any) -> dict[str, Any]:
        workflow = self.workflows.get(parse_id(payload.get("workflowId")) or "")
        if workflow is None:
            raise RunningHubError(380)
        prompt = {
            node_id: {
                "inputs": {name: "example.png" if kind == "image" else "" for name, kind in fields.items()},
                "class_type": "LoadImage" if "image" in fields.values() else "Node",
            }
            for node_id, fields in workflow.nodes.items()
        }
        return {"prompt": json.dumps(prompt)}


_Handler = Callable[[RunningHubPeer, PeerKey, Mapping[str, Any], str, Any], Any]
_HANDLERS: dict[str, _Handler] = {
    CREATE: RunningHubPeer._create,
    AI_APP_RUN: RunningHubPeer._run_app,
    STATUS: RunningHubPeer._status,
    OUTPUTS: RunningHubPeer._outputs,
    CANCEL: RunningHubPeer._cancel,
    ACCOUNT_STATUS: RunningHubPeer._account,
    UPLOAD: RunningHubPeer._upload,
    WEBHOOK_DETAIL: RunningHubPeer._webhook_detail,
    RETRY_WEBHOOK: RunningHubPeer._retry_webhook,
    JSON_API_FORMAT: RunningHubPeer._json_api_format,
}
