"""RunningHub: ComfyUI workflows and AI apps run as async vendor jobs.

RunningHub has no official Python SDK; its OpenAPI is small and plain JSON, so this is our own
httpx client. Every answer is HTTP 200 ``{code, msg, data}``; what a code means for us:

- retry later (``provider_busy``): 415 TASK_INSTANCE_MAXED, 421 TASK_QUEUE_MAXED, 814 personal
  queue full, HTTP 429/5xx and network failures before the request was sent;
- the step fails (``invalid_input``, ``vendor_failed``): 301, 433, 803, 805, 380, 901…;
- the provider is broken (``provider_broken``, ``broken=True``: counted by the circuit breaker, the
  step falls back at once): 802 bad key, 416 wallet empty, 811/812 funds, 412 wrong path.

A ``create`` whose answer was lost (timeout or dropped connection after the request went out, or
an ambiguous 5xx) is never sent again: RunningHub has no idempotency key, so a second create would
run (and bill) the workflow twice. The step keeps the pseudo job id ``unknown:{ref}`` instead; the
webhook of the job that was created names our step (its URL carries ``ref``), which gives the
vendor's task id, confirmed by fetching its outputs. If no webhook comes, the step times out and
the task is refunded: nothing runs twice.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from wardrobe.core.tracing import vendor_http_hooks
from wardrobe.modules.providers.accounts import Account
from wardrobe.modules.providers.base import JobState, JobStatus, ProviderError, StepContext
from wardrobe.modules.providers.callbacks import CallbackEvent, step_ref
from wardrobe.modules.storage.backend import ObjectStorage

UNKNOWN_PREFIX = "unknown:"

_BUSY = {415, 421, 814, 1003, 1011, 1520}
_BROKEN = {412, 416, 802, 811, 812}
_INVALID = {301, 380, 433, 803, 807, 808, 809, 810, 901, 423}
_QUEUED, _RUNNING, _FAILED = 813, 804, 805

OutputSink = Callable[[list[dict[str, Any]], StepContext], Awaitable[dict[str, Any]]]
JobFinder = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Workflow:
    """One action on RunningHub: a workflow (``/task/openapi/create``) or an AI app
    (``/task/openapi/ai-app/run``), and where each step input goes in its node graph."""

    kind: str  # "workflow" | "ai_app"
    id: str
    nodes: Mapping[str, tuple[str, str]]  # step input -> (nodeId, fieldName)
    uploads: frozenset[str] = field(default_factory=frozenset)  # inputs that are our stored images

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> Workflow:
        kind = str(raw.get("kind", "workflow"))
        if kind not in ("workflow", "ai_app"):
            raise ValueError(f"RunningHub workflow kind must be workflow or ai_app, not {kind!r}")
        nodes = {str(name): (str(node[0]), str(node[1])) for name, node in dict(raw.get("nodes", {})).items()}
        uploads = frozenset(str(u) for u in raw.get("uploads", ()))
        if not uploads <= set(nodes):
            raise ValueError("every RunningHub upload input must also be mapped to a node")
        return cls(kind=kind, id=str(raw["id"]), nodes=nodes, uploads=uploads)


class RunningHubProvider:
    """An ``AsyncProvider``: ``submit`` creates the RunningHub task, ``poll`` reads its outputs.

    Calls go out as the step's account (``ctx.account``: its key and endpoint) when operators
    configured accounts, else with the key and base URL given here."""

    accepts_accounts = True

    def __init__(
        self,
        *,
        api_key: str,
        workflows: Mapping[str, Workflow],
        storage: ObjectStorage,
        base_url: str = "https://www.runninghub.cn",
        slug: str = "runninghub",
        timeout_seconds: float = 30.0,
        callback_url: Callable[[str], str | None] | None = None,
        find_job: JobFinder | None = None,
        outputs: OutputSink | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.slug = slug
        self._key = api_key
        self._workflows = dict(workflows)
        self._storage = storage
        self._callback_url = callback_url
        self._find_job = find_job
        self._outputs = outputs
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            transport=transport,
            event_hooks=vendor_http_hooks(slug),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def supports(self, action: str) -> bool:
        return action in self._workflows

    # -- HTTP ----------------------------------------------------------------------------------------

    def _as(self, account: Account | None) -> tuple[str, str, dict[str, str]]:
        """The key, the base URL ("" = the client's) and the headers to call with."""
        if account is None:
            return self._key, "", {}
        return account.secret, account.endpoint or "", {"Authorization": f"Bearer {account.secret}"}

    async def _post(
        self, path: str, body: dict[str, Any], account: Account | None, *, ambiguous_is_unknown: bool = False
    ) -> dict[str, Any]:
        """POST and return the decoded ``{code, msg, data}``. Failures before the request left
        are retryable; after it left, ``ambiguous_is_unknown`` turns them into ``submit_unknown``."""
        key, base, headers = self._as(account)
        try:
            resp = await self._http.post(base + path, json={"apiKey": key, **body}, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderError("vendor_unavailable", type(exc).__name__, retryable=True) from exc
        except httpx.HTTPError as exc:
            if ambiguous_is_unknown:
                raise _SubmitUnknown from exc
            raise ProviderError("vendor_unavailable", type(exc).__name__, retryable=True) from exc
        if resp.status_code == 429:
            raise ProviderError("provider_busy", "HTTP 429", retryable=True)
        if resp.status_code >= 500:
            if ambiguous_is_unknown:
                raise _SubmitUnknown
            raise ProviderError("vendor_unavailable", f"HTTP {resp.status_code}", retryable=True)
        try:
            answer = resp.json()
            code = int(answer["code"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError("vendor_protocol_error", f"HTTP {resp.status_code}", retryable=True) from exc
        return {"code": code, "msg": str(answer.get("msg", "")), "data": answer.get("data")}

    @staticmethod
    def _refuse(code: int, msg: str) -> ProviderError:
        if code in _BUSY:
            return ProviderError("provider_busy", f"RunningHub {code}", retryable=True)
        if code in _BROKEN:
            # A bad key or an empty wallet is the provider failing: the breaker counts it and the
            # step falls back at once, blaming neither the user's input nor retrying in vain.
            return ProviderError("provider_broken", f"RunningHub {code}", broken=True)
        if code in _INVALID:
            return ProviderError("invalid_input", f"RunningHub {code}", retryable=False)
        return ProviderError("vendor_failed", f"RunningHub {code}", retryable=False)

    # -- submit ----------------------------------------------------------------------------------

    async def _upload(self, object_key: str, account: Account | None) -> str:
        data = await self._storage.get(object_key)
        name = object_key.rsplit("/", 1)[-1]
        key, base, headers = self._as(account)
        try:
            resp = await self._http.post(
                base + "/task/openapi/upload",
                data={"apiKey": key, "fileType": "image"},
                files={"file": (name, data)},
                headers=headers,
            )
        except httpx.HTTPError as exc:
            # An upload is idempotent for us (content-addressed at the vendor): safe to retry.
            raise ProviderError("vendor_unavailable", type(exc).__name__, retryable=True) from exc
        if resp.status_code >= 500:
            raise ProviderError("vendor_unavailable", f"HTTP {resp.status_code}", retryable=True)
        answer = resp.json()
        if int(answer.get("code", -1)) != 0:
            raise self._refuse(int(answer.get("code", -1)), str(answer.get("msg", "")))
        return str(answer["data"]["fileName"])

    async def _node_info(
        self, workflow: Workflow, inputs: Mapping[str, Any], account: Account | None
    ) -> list[dict[str, Any]]:
        info = []
        for name, (node_id, field_name) in workflow.nodes.items():
            value = inputs.get(name)
            if value is None:
                continue
            if name in workflow.uploads:
                key = value.get("object_key") if isinstance(value, dict) else value
                if not isinstance(key, str):
                    raise ProviderError("bad_input", f"image input {name!r} is not a stored object", retryable=False)
                value = await self._upload(key, account)
            info.append({"nodeId": node_id, "fieldName": field_name, "fieldValue": value})
        return info

    async def submit(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> str:
        workflow = self._workflows.get(action)
        if workflow is None:
            raise ProviderError("unsupported_action", retryable=False)
        ref = step_ref(ctx.task_id, ctx.step_id)
        body: dict[str, Any] = {"nodeInfoList": await self._node_info(workflow, inputs, ctx.account)}
        if workflow.kind == "workflow":
            path, body["workflowId"] = "/task/openapi/create", workflow.id
        else:
            path, body["webappId"] = "/task/openapi/ai-app/run", workflow.id
        webhook = self._callback_url(ref) if self._callback_url is not None else None
        if webhook:
            body["webhookUrl"] = webhook
        try:
            answer = await self._post(path, body, ctx.account, ambiguous_is_unknown=True)
        except _SubmitUnknown:
            return UNKNOWN_PREFIX + ref
        if answer["code"] != 0:
            raise self._refuse(answer["code"], answer["msg"])
        data = answer["data"] or {}
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not task_id:
            return UNKNOWN_PREFIX + ref  # accepted without an id: find it like a lost answer
        return str(task_id)

    # -- poll ------------------------------------------------------------------------------------

    async def poll(self, job_id: str, ctx: StepContext) -> JobStatus:
        if job_id.startswith(UNKNOWN_PREFIX):
            found = await self._find_job(job_id.removeprefix(UNKNOWN_PREFIX)) if self._find_job else None
            if found is None:
                return JobStatus(JobState.RUNNING)  # until a webhook names it, or the step times out
            job_id = found
        answer = await self._post("/task/openapi/outputs", {"taskId": job_id}, ctx.account)
        code, data = answer["code"], answer["data"]
        if code in (_QUEUED, _RUNNING) or (code == 0 and not data):
            return JobStatus(JobState.RUNNING)
        if code == _FAILED:
            return JobStatus(JobState.FAILED, error_code="vendor_failed")
        if code != 0:
            error = self._refuse(code, answer["msg"])
            if error.retryable:
                raise error
            return JobStatus(JobState.FAILED, error_code=error.code)
        files = [f for f in data if isinstance(f, dict) and f.get("fileUrl")] if isinstance(data, list) else []
        if not files:
            return JobStatus(JobState.FAILED, error_code="vendor_no_output")
        outputs = (
            await self._outputs(files, ctx)
            if self._outputs is not None
            else {"files": [{"url": f["fileUrl"], "type": f.get("fileType")} for f in files]}
        )
        return JobStatus(JobState.SUCCEEDED, {**outputs, "vendor_task_id": job_id})

    async def cancel(self, job_id: str, ctx: StepContext) -> None:
        """Stop the job at RunningHub (a canceled task should stop costing coins)."""
        if job_id.startswith(UNKNOWN_PREFIX):
            found = await self._find_job(job_id.removeprefix(UNKNOWN_PREFIX)) if self._find_job else None
            if found is None:
                return
            job_id = found
        answer = await self._post("/task/openapi/cancel", {"taskId": job_id}, ctx.account)
        if answer["code"] not in (0, _FAILED):  # 805: it had already ended
            raise self._refuse(answer["code"], answer["msg"])


class _SubmitUnknown(Exception):
    """The create request went out and no usable answer came back."""


def parse_callback(body: bytes) -> CallbackEvent:
    """RunningHub's webhook: ``{"event": "TASK_END", "taskId": "...", "eventData": "<JSON text of
    the /outputs answer>"}``, unsigned (the URL's signature is the proof)."""
    message = json.loads(body)
    if not isinstance(message, dict) or not message.get("taskId"):
        raise ValueError("not a RunningHub callback")
    event = str(message.get("event") or "TASK_END")
    task_id = str(message["taskId"])
    raw = message.get("eventData")
    try:
        event_data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        event_data = {"unparsed": str(raw)[:2000]}
    return CallbackEvent(
        event_id=f"{task_id}:{event}",
        event_type=event,
        vendor_task_id=task_id,
        payload={"event": event, "taskId": task_id, "eventData": event_data},
    )
