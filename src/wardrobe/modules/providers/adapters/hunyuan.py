"""Tencent Hunyuan image generation (hunyuan 2023-09-01) as an async provider.

``SubmitHunyuanImageJob`` starts a job and ``QueryHunyuanImageJob`` reports it (``"1"`` waiting,
``"2"`` running, ``"4"`` failed, ``"5"`` done, result URLs valid for one hour). The official SDK's
async client (``hunyuan_client_async``, httpx) signs with TC3-HMAC-SHA256 and takes the endpoint
from ``HttpProfile``, so tests point it at the local peer.

An account runs one job at a time by default; further submits queue at Tencent. Our own slots
(``provider_concurrency``) should match the account's concurrency so queued time counts against
no step's timeout.

**Submitting is not idempotent.** Hunyuan takes no client token, so a submit whose answer was lost
(read timeout, dropped connection, a gateway error after the request went out) may or may not
have started a billed job. Repeating it could pay twice, so that case raises ``submit_unknown``
(not retryable) instead of ``vendor_unavailable``; only failures that prove nothing was sent (no
connection) or answers from Tencent itself are classified as retryable. Keep ``timeout`` well
below the step's timeout, or the engine's own timer fires first and retries the submit.

Error codes stored on steps are ours, never Tencent's message text. Codes in
``PROVIDER_BROKEN_CODES`` mean the account itself cannot work (credentials, billing, region):
retrying is pointless and the provider should be taken out of service until an operator acts.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from wardrobe.core.logging import get_logger
from wardrobe.modules.providers.adapters.tencent_clients import TencentClients
from wardrobe.modules.providers.base import JobState, JobStatus, ProviderError, StepContext

if TYPE_CHECKING:
    from tencentcloud.hunyuan.v20230901 import models
    from tencentcloud.hunyuan.v20230901.hunyuan_client_async import HunyuanClient

TEXT_TO_IMAGE = "text_to_image"
IMAGE_TO_IMAGE = "image_to_image"

# Our codes.
BAD_INPUT = "bad_input"
CONTENT_BLOCKED = "content_blocked"
PROVIDER_BUSY = "provider_busy"
VENDOR_UNAVAILABLE = "vendor_unavailable"
VENDOR_FAILED = "vendor_failed"
VENDOR_JOB_LOST = "vendor_job_lost"
UNEXPECTED_RESPONSE = "vendor_unexpected_response"
SUBMIT_UNKNOWN = "submit_unknown"
PROVIDER_AUTH_FAILED = "provider_auth_failed"
PROVIDER_ACCOUNT_UNUSABLE = "provider_account_unusable"
PROVIDER_MISCONFIGURED = "provider_misconfigured"
PROVIDER_BROKEN_CODES = frozenset({PROVIDER_AUTH_FAILED, PROVIDER_ACCOUNT_UNUSABLE, PROVIDER_MISCONFIGURED})

MAX_PROMPT_CHARS = 1024
_SDK_NETWORK_ERROR = "ServerNetworkError"  # the SDK's code for a non-200 answer

# Tencent codes (hunyuan/v20230901/errorcodes.py and the common codes) → (our code, retryable).
_EXACT: dict[str, tuple[str, bool]] = {
    "OperationDenied.ImageIllegalDetected": (CONTENT_BLOCKED, False),
    "OperationDenied.TextIllegalDetected": (CONTENT_BLOCKED, False),
    "FailedOperation.EngineServerLimitExceeded": (PROVIDER_BUSY, True),
    "LimitExceeded": (PROVIDER_BUSY, True),
    "FailedOperation.EngineRequestTimeout": (VENDOR_UNAVAILABLE, True),
    "FailedOperation.EngineServerError": (VENDOR_UNAVAILABLE, True),
    "FailedOperation.ConsoleServerError": (VENDOR_UNAVAILABLE, True),
    _SDK_NETWORK_ERROR: (VENDOR_UNAVAILABLE, True),
    "FailedOperation.GenerateImageFailed": (VENDOR_FAILED, False),
    "ResourceInsufficient.ChargeResourceExhaust": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "FailedOperation.ResourcePackExhausted": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "FailedOperation.FreeResourcePackExhausted": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "FailedOperation.ServiceNotActivated": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "FailedOperation.ServiceStop": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "FailedOperation.ServiceStopArrears": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "FailedOperation.UserUnAuthError": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "FailedOperation.PartnerAccountUnSupport": (PROVIDER_ACCOUNT_UNUSABLE, False),
    "UnsupportedRegion": (PROVIDER_MISCONFIGURED, False),
    "InvalidAction": (PROVIDER_MISCONFIGURED, False),
    "NoSuchVersion": (PROVIDER_MISCONFIGURED, False),
    "FailedOperation.ImageDownloadError": (BAD_INPUT, False),
    "FailedOperation.DownloadError": (BAD_INPUT, False),
    "FailedOperation.ImageDecodeFailed": (BAD_INPUT, False),
    "ResourceNotFound": (VENDOR_JOB_LOST, False),
}
# Checked in order after the exact codes: the first prefix that matches wins.
_PREFIXES: tuple[tuple[str, tuple[str, bool]], ...] = (
    ("RequestLimitExceeded", (PROVIDER_BUSY, True)),
    ("InternalError", (VENDOR_UNAVAILABLE, True)),
    ("AuthFailure.", (PROVIDER_AUTH_FAILED, False)),
    ("UnauthorizedOperation", (PROVIDER_AUTH_FAILED, False)),
    ("ResourceUnavailable.", (PROVIDER_ACCOUNT_UNUSABLE, False)),
    ("ResourceInsufficient.", (PROVIDER_ACCOUNT_UNUSABLE, False)),
    ("InvalidParameter", (BAD_INPUT, False)),  # InvalidParameter and InvalidParameterValue
    ("MissingParameter", (BAD_INPUT, False)),
)


def classify(vendor_code: str) -> tuple[str, bool]:
    """Our stable code for a Tencent error code, and whether the same call may succeed later.
    Unknown codes fail the step without a retry: we cannot tell whether repeating is safe."""
    known = _EXACT.get(vendor_code)
    if known is not None:
        return known
    for prefix, result in _PREFIXES:
        if vendor_code.startswith(prefix):
            return result
    return VENDOR_FAILED, False


def _resolution(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProviderError(BAD_INPUT, "resolution must be a string like 1024:1024")
    width, sep, height = value.replace("x", ":").replace("*", ":").partition(":")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ProviderError(BAD_INPUT, "resolution must be a string like 1024:1024")
    return f"{int(width)}:{int(height)}"


def _optional_int(inputs: Mapping[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = inputs.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise ProviderError(BAD_INPUT, f"{name} must be an integer from {low}" + (f" to {high}" if high else ""))
    return value


def _optional_text(inputs: Mapping[str, Any], name: str) -> str | None:
    value = inputs.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS:
        raise ProviderError(BAD_INPUT, f"{name} must be text of at most {MAX_PROMPT_CHARS} characters")
    return value


def _client_class() -> type[HunyuanClient]:
    # Here, not at the top: the client module imports all its request models (~5-20 MiB in every
    # process), and only the processes that run steps call the vendor (TencentClients).
    from tencentcloud.hunyuan.v20230901.hunyuan_client_async import HunyuanClient

    client_class: type[HunyuanClient] = HunyuanClient  # the SDK is untyped
    return client_class


class HunyuanProvider:
    """``text_to_image`` and ``image_to_image`` (a content image guiding the result) on Hunyuan.

    Calls go out as the step's account (``ctx.account``: ``key_id``/``secret`` as SecretId and
    SecretKey, its endpoint, ``options["region"]``) when operators configured accounts, else with
    the credentials given here.

    Step inputs: ``prompt`` (required), ``negative_prompt``, ``style`` (a style number from
    Tencent's list), ``resolution`` (``"1024:1024"`` or ``"1024x1024"``), ``seed``, ``num``
    (1-4), ``revise`` (prompt expansion, 0/1) and, for ``image_to_image``, ``content_image_url``
    (a URL Tencent can fetch). Outputs: ``{"images": [url, ...], "revised_prompt": str | None}``;
    the URLs expire after an hour, so a later step must store them.
    """

    accepts_accounts = True

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        slug: str = "hunyuan",
        region: str = "ap-guangzhou",
        endpoint: str | None = None,
        scheme: str = "https",
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        logo_add: bool | None = None,
    ) -> None:
        if scheme not in {"https", "http"}:
            raise ValueError("scheme must be 'https' or 'http'")
        self.slug = slug
        self._logo_add = logo_add
        # hunyuan 3.1.180 ships an async client (httpx), as SMS does; no thread needed.
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
        return action in (TEXT_TO_IMAGE, IMAGE_TO_IMAGE)

    async def submit(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> str:
        request = self._submit_request(action, inputs)
        client = self._clients.get(ctx.account)
        try:
            response = await client.SubmitHunyuanImageJob(request)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, submitting=True, ctx=ctx) from None
        except TencentCloudSDKException as exc:
            raise self._vendor_error(exc, submitting=True, ctx=ctx) from None
        except (ValueError, KeyError, TypeError):
            # Tencent answered 200 with a body that is not its JSON: the job may exist.
            self._log.warning("hunyuan submit answer unreadable", task_id=ctx.task_id, step=ctx.step_id)
            raise ProviderError(SUBMIT_UNKNOWN, "unreadable answer to a submit") from None
        job_id = response.JobId
        if not isinstance(job_id, str) or not job_id:
            raise ProviderError(SUBMIT_UNKNOWN, "submit answer without a JobId")
        return job_id

    async def poll(self, job_id: str, ctx: StepContext) -> JobStatus:
        from tencentcloud.hunyuan.v20230901 import models  # loaded with the client (__init__)

        request = models.QueryHunyuanImageJobRequest()
        request.JobId = job_id
        # A job is only visible to the account that submitted it: the engine polls on that one.
        client = self._clients.get(ctx.account)
        try:
            response = await client.QueryHunyuanImageJob(request)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, submitting=False, ctx=ctx) from None
        except TencentCloudSDKException as exc:
            raise self._vendor_error(exc, submitting=False, ctx=ctx) from None
        except (ValueError, KeyError, TypeError):
            raise ProviderError(UNEXPECTED_RESPONSE, "unreadable answer to a query", retryable=True) from None
        return self._status_of(response, ctx)

    # -- mapping -------------------------------------------------------------------------------

    def _submit_request(self, action: str, inputs: Mapping[str, Any]) -> models.SubmitHunyuanImageJobRequest:
        from tencentcloud.hunyuan.v20230901 import models  # loaded with the client (__init__)

        if not self.supports(action):
            raise ProviderError("unsupported_action")
        prompt = inputs.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
            raise ProviderError(BAD_INPUT, f"prompt must be 1 to {MAX_PROMPT_CHARS} characters")
        request = models.SubmitHunyuanImageJobRequest()
        request.Prompt = prompt
        request.NegativePrompt = _optional_text(inputs, "negative_prompt")
        style = inputs.get("style")
        request.Style = None if style is None or style == "" else str(style)
        request.Resolution = _resolution(inputs.get("resolution"))
        request.Seed = _optional_int(inputs, "seed", 0)
        request.Num = _optional_int(inputs, "num", 1, 4)
        request.Revise = _optional_int(inputs, "revise", 0, 1)
        if self._logo_add is not None:
            request.LogoAdd = 1 if self._logo_add else 0
        image_url = inputs.get("content_image_url")
        if action == IMAGE_TO_IMAGE:
            if not isinstance(image_url, str) or not image_url.startswith(("https://", "http://")):
                raise ProviderError(BAD_INPUT, "image_to_image needs content_image_url")
            image = models.Image()
            image.ImageUrl = image_url
            request.ContentImage = image
        return request

    def _status_of(self, response: models.QueryHunyuanImageJobResponse, ctx: StepContext) -> JobStatus:
        state = response.JobStatusCode
        if state in ("1", "2"):
            return JobStatus(JobState.RUNNING)
        if state == "5":
            images = [url for url in (response.ResultImage or []) if isinstance(url, str) and url]
            if not images:
                return JobStatus(JobState.FAILED, error_code=UNEXPECTED_RESPONSE)
            revised = response.RevisedPrompt or []
            revised_prompt = revised[0] if revised and isinstance(revised[0], str) else None
            return JobStatus(JobState.SUCCEEDED, {"images": images, "revised_prompt": revised_prompt})
        if state == "4":
            vendor_code = str(response.JobErrorCode or "")
            code, _ = classify(vendor_code) if vendor_code else (VENDOR_FAILED, False)
            self._log.info(
                "hunyuan job failed", task_id=ctx.task_id, step=ctx.step_id, vendor_code=vendor_code, error_code=code
            )
            return JobStatus(JobState.FAILED, error_code=code)
        raise ProviderError(UNEXPECTED_RESPONSE, "unknown job status", retryable=True)

    def _vendor_error(self, exc: TencentCloudSDKException, *, submitting: bool, ctx: StepContext) -> ProviderError:
        vendor_code = str(exc.code or "")
        if submitting and vendor_code == _SDK_NETWORK_ERROR:
            # A non-200 answer comes from something in front of Tencent's API (a gateway timing
            # out, say), which may have passed the request on: the job may exist.
            code, retryable = SUBMIT_UNKNOWN, False
        else:
            code, retryable = classify(vendor_code)
        log = self._log.warning if code in PROVIDER_BROKEN_CODES or code == SUBMIT_UNKNOWN else self._log.info
        log(
            "hunyuan call refused",
            action="submit" if submitting else "query",
            task_id=ctx.task_id,
            step=ctx.step_id,
            vendor_code=vendor_code,
            request_id=exc.requestId,
            error_code=code,
        )
        return ProviderError(code, vendor_code, retryable=retryable, broken=code in PROVIDER_BROKEN_CODES)

    def _transport_error(self, exc: httpx.TransportError, *, submitting: bool, ctx: StepContext) -> ProviderError:
        # No connection means nothing was sent; anything later may have reached Tencent.
        nothing_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if submitting and not nothing_sent:
            self._log.warning(
                "hunyuan submit answer lost", task_id=ctx.task_id, step=ctx.step_id, failure=type(exc).__name__
            )
            return ProviderError(SUBMIT_UNKNOWN, type(exc).__name__)
        return ProviderError(VENDOR_UNAVAILABLE, type(exc).__name__, retryable=True)


__all__ = [
    "IMAGE_TO_IMAGE",
    "PROVIDER_BROKEN_CODES",
    "TEXT_TO_IMAGE",
    "HunyuanProvider",
    "classify",
]
