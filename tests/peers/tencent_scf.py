"""The SCF service of the Tencent Cloud peer (scf 2018-04-16): ``Invoke`` and
``GetAsyncEventStatus``, and a stand-in function that calls back with an HMAC-signed result.

``Invoke`` checks what Tencent checks (the function exists in its namespace at its qualifier:
``ResourceNotFound.Function``/``.Namespace``/``.Qualifier``; ``InvocationType`` is ``Event`` or
``RequestResponse``: else ``InvalidParameterValue.InvokeType``; ``ClientContext`` is a JSON object
of at most 128 KB for an async call: else ``InvalidParameterValue.ClientContext``) and answers an
Event invocation at once with ``Result.FunctionRequestId``. Test hooks fail the next invokes with
a code (``fail_next_invoke``).

The stand-in function reads the event our provider sends (``inputs``, ``ref``, ``invocation``,
``callback_url``) and POSTs ``{"payload": "<JSON text>", "signature": hex HMAC-SHA256(key,
payload)}`` to ``callback_url`` (the scheme documented in ``wardrobe.modules.providers.adapters.scf``).
Its result: ``succeeded`` with ``outputs.images`` = one PNG served by the peer, or ``failed``
with ``error: "content_blocked"`` when the inputs contain "unsafe", or the code given to
``fail_next_result``. With ``auto`` (the default) the callback is posted as soon as the invoke
has been answered, on the peer server's loop; without it the test calls ``deliver``, which also
sends duplicates, stale results, forged signatures and tampered payloads. ``abort_next`` makes the
next invocation end ``FAILED`` at SCF without any callback (what ``GetAsyncEventStatus`` reports).

The peer's lock is held by the caller of every action and taken by the test hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from tests.peers.runninghub_webhooks import Changes
from tests.peers.tencent_hunyuan import result_png

if TYPE_CHECKING:
    from tests.peers.tencent_cloud import Tc3Caller

SCF_VERSION = "2018-04-16"
SCF_RESULT_PREFIX = "/scf/results"
TEST_SCF_FUNCTION = "wardrobe-test-fn"
TEST_SCF_CALLBACK_KEY = "scf-callback-test-key-not-real"
MAX_EVENT_BYTES = 128 * 1024

RaiseError = Callable[[str, str], Exception]
Handler = Callable[["Tc3Caller", dict[str, Any]], dict[str, Any]]


def sign(key: str, text: str) -> str:
    return hmac.new(key.encode(), text.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class Invocation:
    request_id: str
    account: str
    function: str
    host: str
    event: dict[str, Any]
    status: str = "RUNNING"  # GetAsyncEventStatus: RUNNING, FINISHED, FAILED, ABORTED
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    request_id: str
    kind: str  # "result", "duplicate", "stale", "forged", "tampered"
    status_code: int | None  # None: no HTTP answer


@dataclass
class ScfService:
    clock: Callable[[], float]
    error: RaiseError
    lock: threading.Lock
    callback_key: str = TEST_SCF_CALLBACK_KEY
    auto: bool = True
    # (namespace, name) -> qualifiers the function has.
    functions: dict[tuple[str, str], set[str]] = field(
        default_factory=lambda: {("default", TEST_SCF_FUNCTION): {"$LATEST", "1"}}
    )
    invocations: dict[str, Invocation] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    changes: Changes = field(default_factory=Changes)
    _invoke_faults: list[str] = field(default_factory=list)
    _result_faults: list[str] = field(default_factory=list)
    _aborts: int = 0
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def actions(self) -> dict[str, tuple[str, str, Handler]]:
        """Action -> (service, version, handler), for the Tencent Cloud peer's dispatch."""
        return {
            "Invoke": ("scf", SCF_VERSION, self._invoke),
            "GetAsyncEventStatus": ("scf", SCF_VERSION, self._async_event_status),
        }

    # -- test hooks ----------------------------------------------------------------------------

    def fail_next_invoke(self, code: str, count: int = 1) -> None:
        with self.lock:
            self._invoke_faults.extend([code] * count)

    def fail_next_result(self, error: str) -> None:
        """The next invocation's function reports ``failed`` with ``error``."""
        with self.lock:
            self._result_faults.append(error)

    def abort_next(self) -> None:
        """The next invocation dies at SCF (status ``FAILED``) and never calls back."""
        with self.lock:
            self._aborts += 1

    def invocation(self, request_id: str) -> Invocation:
        with self.lock:
            return self.invocations[request_id]

    def request_ids(self) -> list[str]:
        with self.lock:
            return list(self.invocations)

    def body_for(self, request_id: str, *, key: str | None = None, tamper: bool = False, **changes: Any) -> bytes:
        """The callback body of an invocation's result; ``changes`` replace payload fields (a
        stale or contradicting result), ``key`` signs with another key (a forgery), ``tamper``
        alters the payload after signing."""
        with self.lock:
            invocation = self.invocations[request_id]
            payload = {**invocation.result, **changes}
        text = json.dumps(payload, ensure_ascii=False)
        signature = sign(key or self.callback_key, text)
        if tamper:
            payload = {**payload, "outputs": {"images": ["http://attacker.invalid/evil.png"]}}
            text = json.dumps(payload, ensure_ascii=False)
        return json.dumps({"payload": text, "signature": signature}).encode()

    async def deliver(
        self,
        request_id: str,
        *,
        kind: str = "result",
        key: str | None = None,
        tamper: bool = False,
        **changes: Any,
    ) -> int | None:
        """POST an invocation's (possibly altered) result to its callback URL; the HTTP status."""
        with self.lock:
            url = str(self.invocations[request_id].event["callback_url"])
        body = self.body_for(request_id, key=key, tamper=tamper, **changes)
        status: int | None
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(url, content=body, headers={"Content-Type": "application/json"})
            status = answer.status_code
        except httpx.HTTPError:
            status = None
        with self.lock:
            self.deliveries.append(Delivery(request_id, kind, status))
            if kind == "result" and status is not None and status < 300:
                self.invocations[request_id].status = "FINISHED"
        self.changes.fire()
        return status

    async def wait_deliveries(self, count: int, within: float = 30.0) -> list[Delivery]:
        def enough() -> bool:
            with self.lock:
                return len(self.deliveries) >= count

        await self.changes.wait_for(enough, within)
        with self.lock:
            return list(self.deliveries)

    def result_image(self, request_id: str) -> bytes | None:
        with self.lock:
            invocation = self.invocations.get(request_id)
            if invocation is None or invocation.result.get("status") != "succeeded":
                return None
            return result_png()

    # -- actions (called under the lock) -------------------------------------------------------

    def _invoke(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("FunctionName")
        if not isinstance(name, str) or not name:
            raise self.error("MissingParameter", "The parameter `FunctionName` is missing.")
        namespace = params.get("Namespace") or "default"
        if not any(ns == namespace for ns, _ in self.functions):
            raise self.error("ResourceNotFound.Namespace", f"Namespace {namespace} does not exist.")
        qualifiers = self.functions.get((namespace, name))
        if qualifiers is None:
            raise self.error("ResourceNotFound.Function", f"Function {name} does not exist.")
        if (params.get("Qualifier") or "$LATEST") not in qualifiers:
            raise self.error("ResourceNotFound.Qualifier", "The qualifier does not exist.")
        kind = params.get("InvocationType") or "RequestResponse"
        if kind not in ("Event", "RequestResponse"):
            raise self.error("InvalidParameterValue.InvokeType", "InvocationType must be Event or RequestResponse.")
        raw = params.get("ClientContext") or "{}"
        try:
            event = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            event = None
        if not isinstance(event, dict) or (kind == "Event" and len(raw.encode()) > MAX_EVENT_BYTES):
            raise self.error("InvalidParameterValue.ClientContext", "ClientContext is not a JSON object in bounds.")
        if self._invoke_faults:
            code = self._invoke_faults.pop(0)
            raise self.error(code, "The invocation was refused.")
        request_id = str(uuid.uuid4())
        invocation = Invocation(request_id, caller.secret_id, name, caller.host, event)
        invocation.result = self._run_function(invocation)
        if self._aborts:
            self._aborts -= 1
            invocation.status = "FAILED"
        self.invocations[request_id] = invocation
        if kind == "RequestResponse":
            invocation.status = "FINISHED"
            return {"Result": self._result(request_id, json.dumps(invocation.result))}
        if self.auto and invocation.status == "RUNNING" and event.get("callback_url"):
            self._spawn(request_id)
        self.changes.fire()
        return {"Result": self._result(request_id, "")}

    def _async_event_status(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        request_id = params.get("InvokeRequestId")
        if not isinstance(request_id, str) or not request_id:
            raise self.error("MissingParameter", "The parameter `InvokeRequestId` is missing.")
        invocation = self.invocations.get(request_id)
        if invocation is None or invocation.account != caller.secret_id:
            raise self.error("ResourceNotFound.AsyncEvent", "The async event does not exist.")
        code = {"RUNNING": 200, "FINISHED": 200, "FAILED": 500, "ABORTED": 499}[invocation.status]
        return {"Result": {"Status": invocation.status, "StatusCode": code, "InvokeRequestId": request_id}}

    # -- internals -----------------------------------------------------------------------------

    def _run_function(self, invocation: Invocation) -> dict[str, Any]:
        event = invocation.event
        payload: dict[str, Any] = {
            "ref": event.get("ref"),
            "invocation": event.get("invocation"),
            "request_id": invocation.request_id,
            "timestamp": int(time.time()),
        }
        if self._result_faults:
            return {**payload, "status": "failed", "error": self._result_faults.pop(0), "outputs": {}}
        if "unsafe" in json.dumps(event.get("inputs")):
            return {**payload, "status": "failed", "error": "content_blocked", "outputs": {}}
        image = f"http://{invocation.host}{SCF_RESULT_PREFIX}/{invocation.request_id}.png"
        return {**payload, "status": "succeeded", "outputs": {"images": [image], "action": event.get("action")}}

    @staticmethod
    def _result(request_id: str, invoke_result: str) -> dict[str, Any]:
        return {
            "FunctionRequestId": request_id,
            "RetMsg": invoke_result,
            "ErrMsg": "",
            "Log": "",
            "MemUsage": 0,
            "Duration": 0.0,
            "BillDuration": 0,
            "InvokeResult": 0,
        }

    def _spawn(self, request_id: str) -> None:
        # On the peer server's loop when there is one (the answer to Invoke goes out first, as the
        # request is answered before this task gets to run); a direct call has none: no delivery.
        with contextlib.suppress(RuntimeError):
            task = asyncio.get_running_loop().create_task(self.deliver(request_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
