"""Tencent SCF (Serverless Cloud Function, scf 2018-04-16) as an async provider.

``submit`` invokes the action's function asynchronously (``Invoke`` with ``InvocationType=Event``):
SCF accepts the event at once and answers with the invocation's ``FunctionRequestId``, which is
our job id. The function does the work and **calls us back with its result**, HMAC-signed; the
callback *is* the result, recorded in the vendor callback inbox, and ``poll`` reads it from there.

**The event** (``ClientContext``, a JSON object of at most 128 KB) the function receives::

    {"action": "...", "inputs": {...}, "ref": "<task>.<step>", "invocation": "<ref>#<attempt>",
     "callback_url": "https://…/api/v1/callbacks/scf/<ref>?sig=…"}

Image inputs named in the function's configuration are sent as ``{"object_key": key}`` plus, if
the provider has ``input_url``, a short-lived signed ``"url"`` the function downloads.

**The callback** (the result must be signed: "SCF回调必须验证签名", a rule of the system this one
replaces). The function POSTs to ``callback_url``::

    {"payload": "<JSON text>", "signature": "<hex HMAC-SHA256(callback_key, payload text as UTF-8)>"}

    payload = {"ref": ..., "invocation": ..., "request_id": <its context.request_id>,
               "status": "succeeded" | "failed", "outputs": {...}, "error": "<code>",
               "timestamp": <unix seconds>}

The signature covers the exact bytes of the payload text, so no JSON canonicalisation is needed on
either side. Two proofs are checked: the URL's own signature (ours, ``providers.callbacks``) says
the callback is about a step we invoked; the body's says the *result* comes from the function
(which holds ``callback_key`` in its environment) and was not changed on the way. A body that fails
it is refused with 403 and never recorded. ``poll`` verifies it again before believing the inbox,
and only takes a result naming this step, this attempt and (when known) this invocation, so
duplicates, results of an earlier attempt arriving late, and forgeries change nothing. ``outputs``
may carry ``images``: URLs copied into our storage by the ``outputs`` sink (idempotent per
step attempt, so a duplicate callback stores nothing twice).

While no callback has come, ``poll`` asks SCF itself (``GetAsyncEventStatus``): an invocation
that SCF reports ``FAILED`` or ``ABORTED`` fails the step at once instead of waiting out its
timeout.

**Invoking is not idempotent.** An ``Invoke`` whose answer was lost after it went out may have
started the function; it is never sent again. The step keeps the pseudo job id
``unknown:{ref}`` and takes the result of the callback naming this step and attempt (the event
carries both, so the function's callback can still be matched). With no callback the step times
out and the task is refunded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from wardrobe.core.logging import get_logger
from wardrobe.modules.providers.adapters.hunyuan import (
    BAD_INPUT,
    PROVIDER_ACCOUNT_UNUSABLE,
    PROVIDER_BROKEN_CODES,
    PROVIDER_BUSY,
    PROVIDER_MISCONFIGURED,
    UNEXPECTED_RESPONSE,
    VENDOR_UNAVAILABLE,
)
from wardrobe.modules.providers.adapters.hunyuan import classify as classify_common
from wardrobe.modules.providers.adapters.tencent_clients import TencentClients
from wardrobe.modules.providers.base import JobState, JobStatus, ProviderError, StepContext
from wardrobe.modules.providers.callbacks import CallbackEvent, CallbackForged, step_ref

if TYPE_CHECKING:
    from tencentcloud.scf.v20180416.scf_client_async import ScfClient

UNKNOWN_PREFIX = "unknown:"
FUNCTION_FAILED = "function_failed"
MAX_EVENT_BYTES = 128 * 1024  # SCF's limit for an asynchronous invocation's event
SUCCEEDED, FAILED = "succeeded", "failed"
_SDK_NETWORK_ERROR = "ServerNetworkError"

# scf/v20180416/errorcodes.py, on top of the common codes.
_SCF: dict[str, tuple[str, bool]] = {
    "ResourceNotFound.Function": (PROVIDER_MISCONFIGURED, False),
    "ResourceNotFound.FunctionName": (PROVIDER_MISCONFIGURED, False),
    "ResourceNotFound.Namespace": (PROVIDER_MISCONFIGURED, False),
    "ResourceNotFound.Qualifier": (PROVIDER_MISCONFIGURED, False),
    "ResourceNotFound.Version": (PROVIDER_MISCONFIGURED, False),
    "ResourceNotFound.FunctionVersion": (PROVIDER_MISCONFIGURED, False),
    "ResourceNotFound.Alias": (PROVIDER_MISCONFIGURED, False),
    "FailedOperation.FunctionStatusError": (PROVIDER_MISCONFIGURED, False),
    "InvalidParameterValue.InvokeType": (PROVIDER_MISCONFIGURED, False),
    "FailedOperation.InsufficientBalance": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "ResourceUnavailable.InsufficientBalance": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "ResourceUnavailable.ServiceSuspended": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "FailedOperation.TotalConcurrencyMemoryInProgress": (PROVIDER_BUSY, True),
    "LimitExceeded.TotalConcurrencyMemory": (PROVIDER_BUSY, True),
    "LimitExceeded.UserTotalConcurrencyMemory": (PROVIDER_BUSY, True),
    "LimitExceeded.FunctionReservedConcurrencyMemory": (PROVIDER_BUSY, True),
    "InvalidParameterValue.ClientContext": (BAD_INPUT, False),
}

OutputSink = Callable[[list[dict[str, Any]], StepContext], Awaitable[dict[str, Any]]]
Inbox = Callable[[str], Awaitable[Sequence[Mapping[str, Any]]]]
CallbackUrl = Callable[[str], str | None]
InputUrl = Callable[[str], str]


def classify(vendor_code: str) -> tuple[str, bool]:
    """Our stable code for an SCF error code, and whether the same call may succeed later."""
    known = _SCF.get(vendor_code)
    return known if known is not None else classify_common(vendor_code)


def sign_result(key: str, payload_text: str) -> str:
    """The signature a function puts on its result (see the module docstring)."""
    return hmac.new(key.encode(), payload_text.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ScfFunction:
    """What runs one action: a function (``name``, in ``namespace`` at ``qualifier``), and which
    step inputs are stored images."""

    name: str
    namespace: str = "default"
    qualifier: str = "$LATEST"
    image_inputs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | str) -> ScfFunction:
        if isinstance(raw, str):
            return cls(name=raw)
        return cls(
            name=str(raw["name"]),
            namespace=str(raw.get("namespace", "default")),
            qualifier=str(raw.get("qualifier", "$LATEST")),
            image_inputs=frozenset(str(n) for n in raw.get("image_inputs", ())),
        )


@dataclass(frozen=True, slots=True)
class ScfResult:
    ref: str
    invocation: str
    request_id: str
    status: str
    outputs: Mapping[str, Any]
    error: str


def read_signed_result(key: str, envelope: Mapping[str, Any]) -> ScfResult:
    """The result inside a callback body, if its signature holds. Raises ``CallbackForged`` for a
    bad signature, ``ValueError`` for anything else malformed."""
    text, signature = envelope.get("payload"), envelope.get("signature")
    if not isinstance(text, str) or not isinstance(signature, str):
        raise ValueError("an SCF callback is {payload, signature}")
    if not hmac.compare_digest(sign_result(key, text), signature.strip().lower()):
        raise CallbackForged("SCF result signature does not verify")
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise ValueError("the SCF payload is not an object")
    status = payload.get("status")
    fields = (payload.get("ref"), payload.get("invocation"), payload.get("request_id"))
    if status not in (SUCCEEDED, FAILED) or not all(isinstance(f, str) and f for f in fields):
        raise ValueError("the SCF payload lacks ref, invocation, request_id or status")
    outputs = payload.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise ValueError("the SCF outputs are not an object")
    return ScfResult(
        ref=str(payload["ref"]),
        invocation=str(payload["invocation"]),
        request_id=str(payload["request_id"]),
        status=str(status),
        outputs=outputs,
        error=str(payload.get("error") or "")[:64],
    )


def _client_class() -> type[ScfClient]:
    # Here, not at the top: the client module imports all its request models (~5-20 MiB in every
    # process), and only the processes that run steps call the vendor (TencentClients).
    from tencentcloud.scf.v20180416.scf_client_async import ScfClient

    client_class: type[ScfClient] = ScfClient  # the SDK is untyped
    return client_class


class ScfProvider:
    """An ``AsyncProvider`` (and ``providers.callbacks.VerifiesCallbacks``): see the module docstring.

    Invokes and status queries go out as the step's account (``ctx.account``) when operators
    configured accounts, as in ``hunyuan.py``. The callback key stays the deployment's: it is what
    our functions sign results with, whichever account invoked them."""

    accepts_accounts = True

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        functions: Mapping[str, ScfFunction],
        callback_key: str,
        callback_url: CallbackUrl,
        inbox: Inbox,
        slug: str = "scf",
        region: str = "ap-guangzhou",
        endpoint: str | None = None,
        scheme: str = "https",
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        outputs: OutputSink | None = None,
        input_url: InputUrl | None = None,
        status_query: bool = True,
    ) -> None:
        if scheme not in {"https", "http"}:
            raise ValueError("scheme must be 'https' or 'http'")
        if not callback_key:
            raise ValueError("SCF results cannot be trusted without a callback key")
        self.slug = slug
        self._functions = dict(functions)
        self._key = callback_key
        self._callback_url = callback_url
        self._inbox = inbox
        self._outputs = outputs
        self._input_url = input_url
        self._status_query = status_query
        self._clients = TencentClients(
            _client_class,
            secret_id=secret_id,
            secret_key=secret_key,
            region=region,
            endpoint=endpoint,
            scheme=scheme,
            timeout=timeout,
            connect_timeout=connect_timeout,
        )
        self._log = get_logger(__name__)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._clients.aclose()

    def supports(self, action: str) -> bool:
        return action in self._functions

    # -- callbacks -------------------------------------------------------------------------------

    def parse_callback(self, body: bytes) -> CallbackEvent:
        """The endpoint's parser for this provider: verifies the function's signature first."""
        envelope = json.loads(body)
        if not isinstance(envelope, dict):
            raise ValueError("not an SCF callback")
        result = read_signed_result(self._key, envelope)
        return CallbackEvent(
            event_id=f"{result.request_id}:{result.status}",
            event_type=result.status,
            vendor_task_id=result.request_id,
            payload={"payload": envelope["payload"], "signature": envelope["signature"]},
        )

    # -- submit ----------------------------------------------------------------------------------

    async def submit(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> str:
        from tencentcloud.scf.v20180416 import models  # loaded with the client (__init__)

        function = self._functions.get(action)
        if function is None:
            raise ProviderError("unsupported_action")
        ref = step_ref(ctx.task_id, ctx.step_id)
        callback = self._callback_url(ref)
        if not callback:
            # Without a callback the result never reaches us: refuse rather than run blind.
            raise ProviderError(PROVIDER_MISCONFIGURED, "no public callback URL", broken=True)
        event = {
            "action": action,
            "inputs": self._event_inputs(function, inputs),
            "ref": ref,
            "invocation": self._invocation(ctx),
            "callback_url": callback,
        }
        try:
            text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            raise ProviderError(BAD_INPUT, "step inputs are not JSON") from None
        if len(text.encode()) > MAX_EVENT_BYTES:
            raise ProviderError(BAD_INPUT, "event over SCF's 128 KB limit for async invocations")
        request = models.InvokeRequest()
        request.FunctionName = function.name
        request.Namespace = function.namespace
        request.Qualifier = function.qualifier
        request.InvocationType = "Event"
        request.ClientContext = text
        client = self._clients.get(ctx.account)
        try:
            response = await client.Invoke(request)
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
                raise ProviderError(VENDOR_UNAVAILABLE, type(exc).__name__, retryable=True) from None
            return self._lost(ref, ctx, type(exc).__name__)
        except TencentCloudSDKException as exc:
            if exc.code == _SDK_NETWORK_ERROR:
                return self._lost(ref, ctx, "gateway error")
            raise self._vendor_error(exc, "invoke", ctx) from None
        except (ValueError, KeyError, TypeError):
            return self._lost(ref, ctx, "unreadable answer")
        request_id = getattr(response.Result, "FunctionRequestId", None) if response.Result else None
        if not isinstance(request_id, str) or not request_id:
            return self._lost(ref, ctx, "answer without FunctionRequestId")
        return request_id

    def _event_inputs(self, function: ScfFunction, inputs: Mapping[str, Any]) -> dict[str, Any]:
        sent = dict(inputs)
        for name in function.image_inputs:
            value = inputs.get(name)
            if value is None:
                continue
            key = value.get("object_key") if isinstance(value, dict) else value
            if not isinstance(key, str) or not key:
                raise ProviderError(BAD_INPUT, f"image input {name!r} is not a stored object")
            image: dict[str, Any] = {"object_key": key}
            if self._input_url is not None:
                image["url"] = self._input_url(key)
            sent[name] = image
        return sent

    def _lost(self, ref: str, ctx: StepContext, why: str) -> str:
        # The function may be running: never invoke again; its callback names this step.
        self._log.warning("scf invoke answer lost", task_id=ctx.task_id, step=ctx.step_id, failure=why)
        return UNKNOWN_PREFIX + ref

    @staticmethod
    def _invocation(ctx: StepContext) -> str:
        return f"{step_ref(ctx.task_id, ctx.step_id)}#{int(ctx.attempt)}"

    # -- poll ------------------------------------------------------------------------------------

    async def poll(self, job_id: str, ctx: StepContext) -> JobStatus:
        ref = step_ref(ctx.task_id, ctx.step_id)
        result = self._result_in(await self._inbox(ref), job_id, ref, ctx)
        if result is None:
            if self._status_query and not job_id.startswith(UNKNOWN_PREFIX):
                return await self._ask_scf(job_id, ctx)
            return JobStatus(JobState.RUNNING)
        if result.status == FAILED:
            code = result.error if result.error and result.error.replace("_", "").isalnum() else FUNCTION_FAILED
            return JobStatus(JobState.FAILED, error_code=code)
        outputs = dict(result.outputs)
        images = outputs.get("images")
        if self._outputs is not None and isinstance(images, list) and images:
            if not all(isinstance(url, str) for url in images):
                return JobStatus(JobState.FAILED, error_code=UNEXPECTED_RESPONSE)
            outputs.update(await self._outputs([{"fileUrl": url} for url in images], ctx))
        return JobStatus(JobState.SUCCEEDED, {**outputs, "vendor_task_id": result.request_id})

    def _result_in(
        self, recorded: Sequence[Mapping[str, Any]], job_id: str, ref: str, ctx: StepContext
    ) -> ScfResult | None:
        """The result for this step attempt among the recorded callbacks: verified again, for this
        ref and attempt and (unless the invoke answer was lost) this invocation; a success wins
        over a failure whatever order they came in."""
        invocation = self._invocation(ctx)
        known = None if job_id.startswith(UNKNOWN_PREFIX) else job_id
        found: list[ScfResult] = []
        for envelope in recorded:
            try:
                result = read_signed_result(self._key, envelope)
            except ValueError:
                self._log.warning("scf inbox entry does not verify", task_id=ctx.task_id, step=ctx.step_id)
                continue
            if result.ref != ref or result.invocation != invocation:
                continue
            if known is not None and result.request_id != known:
                continue
            found.append(result)
        return next((r for r in found if r.status == SUCCEEDED), found[0] if found else None)

    async def _ask_scf(self, request_id: str, ctx: StepContext) -> JobStatus:
        from tencentcloud.scf.v20180416 import models  # loaded with the client (__init__)

        request = models.GetAsyncEventStatusRequest()
        request.InvokeRequestId = request_id
        client = self._clients.get(ctx.account)  # SCF shows an invocation to its own account only
        try:
            response = await client.GetAsyncEventStatus(request)
        except httpx.TransportError as exc:
            raise ProviderError(VENDOR_UNAVAILABLE, type(exc).__name__, retryable=True) from None
        except TencentCloudSDKException as exc:
            if exc.code == _SDK_NETWORK_ERROR:
                raise ProviderError(VENDOR_UNAVAILABLE, "gateway error", retryable=True) from None
            if exc.code == "ResourceNotFound.AsyncEvent":
                # SCF keeps async event records for a while only; the callback stays the truth.
                return JobStatus(JobState.RUNNING)
            raise self._vendor_error(exc, "status", ctx) from None
        except (ValueError, KeyError, TypeError):
            raise ProviderError(UNEXPECTED_RESPONSE, "unreadable status", retryable=True) from None
        status = getattr(response.Result, "Status", None) if response.Result else None
        if status in ("FAILED", "ABORTED"):
            self._log.info("scf invocation ended without a result", task_id=ctx.task_id, status=status)
            return JobStatus(JobState.FAILED, error_code=FUNCTION_FAILED)
        # RUNNING, or FINISHED with its callback still on the way.
        return JobStatus(JobState.RUNNING)

    def _vendor_error(self, exc: TencentCloudSDKException, call: str, ctx: StepContext) -> ProviderError:
        vendor_code = str(exc.code or "")
        code, retryable = classify(vendor_code)
        broken = code in PROVIDER_BROKEN_CODES
        (self._log.warning if broken else self._log.info)(
            "scf call refused",
            call=call,
            task_id=ctx.task_id,
            step=ctx.step_id,
            vendor_code=vendor_code,
            request_id=exc.requestId,
            error_code=code,
        )
        return ProviderError(code, vendor_code, retryable=retryable, broken=broken)


def functions_from_config(raw: Mapping[str, Mapping[str, Any] | str]) -> dict[str, ScfFunction]:
    """``{"action": "function-name" | {"name", "namespace", "qualifier", "image_inputs"}}``."""
    return {str(action): ScfFunction.from_config(spec) for action, spec in raw.items()}


__all__ = [
    "FUNCTION_FAILED",
    "UNKNOWN_PREFIX",
    "ScfFunction",
    "ScfProvider",
    "classify",
    "functions_from_config",
    "read_signed_result",
    "sign_result",
]
