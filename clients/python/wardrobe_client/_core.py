"""What the sync and the async client share: the envelope, the error, the requests they send and
the polling back-off. Neither does any I/O here."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from ._generated import ErrorCode, Task, TaskStatus, UploadGrant

TERMINAL_STATUSES: frozenset[TaskStatus] = frozenset({"succeeded", "failed", "canceled"})
DEFAULT_TIMEOUT = 30.0


class WardrobeError(Exception):
    """A failure the API (or something in front of it) answered.

    ``code`` is an :class:`ErrorCode` (a ``str``: compare with either), or the code as sent when
    this client's ErrorCode does not know it yet. Branch on ``code``, show ``message``, quote
    ``request_id`` to support. ``data`` is what the code carries (e.g. ``[{field, message}]`` for
    ``VALIDATION_FAILED``, ``{retry_after}`` for ``RATE_LIMITED``).
    """

    def __init__(
        self, code: ErrorCode | str, message: str, status: int, data: Any = None, request_id: str | None = None
    ) -> None:
        super().__init__(f"{code} (HTTP {status}): {message}")
        self.code = code
        self.message = message
        self.status = status
        self.data = data
        self.request_id = request_id


class TaskWaitTimeout(TimeoutError):
    """The task did not finish in time; ``task`` is how it was last seen."""

    def __init__(self, task: Task) -> None:
        super().__init__(f"task {task['id']} still {task['status']}")
        self.task = task


def error_code(value: str) -> ErrorCode | str:
    try:
        return ErrorCode(value)
    except ValueError:
        return value


def _code_for_status(status: int) -> ErrorCode:
    """The code for an answer without the envelope (a proxy's error page, a bucket's refusal)."""
    if status == 404:
        return ErrorCode.NOT_FOUND
    if status == 413:
        return ErrorCode.PAYLOAD_TOO_LARGE
    if status == 429:
        return ErrorCode.RATE_LIMITED
    if status in (502, 503, 504):
        return ErrorCode.DEPENDENCY_UNAVAILABLE
    return ErrorCode.INTERNAL_ERROR


def unwrap(response: httpx.Response) -> Any:
    """``data`` of a success envelope; anything else raises :class:`WardrobeError`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    is_envelope = (
        isinstance(body, dict)
        and isinstance(body.get("success"), bool)
        and isinstance(body.get("code"), str)
        and isinstance(body.get("message"), str)
    )
    request_id = body.get("request_id") if is_envelope else response.headers.get("x-request-id")
    if is_envelope and body["success"] and response.is_success:
        return body.get("data")
    if is_envelope and not body["success"]:
        raise WardrobeError(
            error_code(body["code"]), body["message"], response.status_code, body.get("data"), request_id
        )
    status = response.status_code
    raise WardrobeError(_code_for_status(status), f"HTTP {status} without the API's envelope", status, None, request_id)


def new_idempotency_key() -> str:
    """A fresh ``Idempotency-Key``. Keep it to retry a creation whose answer was lost."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Call:
    """One request to the API, before it is sent."""

    method: str
    path: str
    json: Any = None
    params: dict[str, str | int] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def upload_call(filename: str, content_type: str, size: int) -> Call:
    return Call("POST", "/api/v1/uploads", json={"filename": filename, "content_type": content_type, "size": size})


def complete_call(object_key: str) -> Call:
    return Call("POST", "/api/v1/uploads/complete", json={"object_key": object_key})


def put_request(grant: UploadGrant) -> tuple[str, str, dict[str, str]]:
    """How to send the bytes: exactly the grant's method, URL and headers (no bearer token: the
    URL is signed; on the local backend it is relative to the API)."""
    upload = grant["upload"]
    return upload["method"], upload["url"], dict(upload["headers"])


def create_task_call(feature: str, inputs: Mapping[str, Any], idempotency_key: str) -> Call:
    body = {"feature": feature, "inputs": dict(inputs)}
    return Call("POST", "/api/v1/tasks", json=body, headers={"Idempotency-Key": idempotency_key})


def get_task_call(task_id: str) -> Call:
    return Call("GET", f"/api/v1/tasks/{quote(task_id, safe='')}")


def list_tasks_call(limit: int | None, cursor: str | None, status: TaskStatus | None, feature: str | None) -> Call:
    given = {"limit": limit, "cursor": cursor, "status": status, "feature": feature}
    return Call("GET", "/api/v1/tasks", params={name: value for name, value in given.items() if value is not None})


def backoff(initial: float, maximum: float, factor: float = 1.5) -> Iterator[float]:
    """The waits between polls: ``initial``, then ``factor`` times longer each time, up to ``maximum``."""
    delay = initial
    while True:
        yield delay
        delay = min(delay * factor, maximum)


def client_headers(api_key: str, language: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """(headers of every request, the bearer header of API requests only)."""
    if not api_key:
        raise ValueError("an API key (wk_…) is required")
    common = {"Accept": "application/json", "User-Agent": "wardrobe-client-python"}
    if language:
        common["Accept-Language"] = language
    return common, {"Authorization": f"Bearer {api_key}"}
