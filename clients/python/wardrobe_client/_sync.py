"""The blocking client (httpx.Client)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, cast

import httpx

from ._core import (
    DEFAULT_TIMEOUT,
    TERMINAL_STATUSES,
    Call,
    TaskWaitTimeout,
    backoff,
    client_headers,
    complete_call,
    create_task_call,
    get_task_call,
    list_tasks_call,
    new_idempotency_key,
    put_request,
    unwrap,
    upload_call,
)
from ._generated import ContentType, StoredObject, Task, TaskPage, TaskStatus, UploadGrant


class WardrobeClient:
    """The Wardrobe API with an API key (``wk_…``), blocking. Use it as a context manager or
    ``close()`` it. ``base_url`` is the API's origin, e.g. ``https://api.example.com``."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        language: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        common, self._auth = client_headers(api_key, language)
        self._http = httpx.Client(base_url=base_url, headers=common, timeout=timeout, transport=transport)

    def __enter__(self) -> WardrobeClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, call: Call) -> Any:
        """Send one API request with the key; ``data`` of its envelope."""
        headers = {**self._auth, **call.headers}
        response = self._http.request(call.method, call.path, json=call.json, params=call.params, headers=headers)
        return unwrap(response)

    def upload(self, content: bytes, *, filename: str, content_type: ContentType) -> StoredObject:
        """Ask for a grant, send the bytes as it says, have them verified: use the answer's
        ``object_key`` as a task's image input."""
        grant = cast(UploadGrant, self.request(upload_call(filename, content_type, len(content))))
        method, url, headers = put_request(grant)
        sent = self._http.request(method, url, content=content, headers=headers)
        if not sent.is_success:
            unwrap(sent)
        return cast(StoredObject, self.request(complete_call(grant["object_key"])))

    def create_task(self, feature: str, inputs: Mapping[str, Any], *, idempotency_key: str | None = None) -> Task:
        """Run a feature. Without ``idempotency_key`` a new one is sent: pass your own to retry a
        creation whose answer was lost (the same key and body return the same task)."""
        call = create_task_call(feature, inputs, idempotency_key or new_idempotency_key())
        return cast(Task, self.request(call))

    def get_task(self, task_id: str) -> Task:
        return cast(Task, self.request(get_task_call(task_id)))

    def list_tasks(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        status: TaskStatus | None = None,
        feature: str | None = None,
    ) -> TaskPage:
        """One page, newest first; pass its ``next_cursor`` as ``cursor`` for the next."""
        return cast(TaskPage, self.request(list_tasks_call(limit, cursor, status, feature)))

    def iter_tasks(
        self, *, status: TaskStatus | None = None, feature: str | None = None, page_size: int = 50
    ) -> Iterator[Task]:
        """Every task, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_tasks(limit=page_size, cursor=cursor, status=status, feature=feature)
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def wait_for_task(
        self, task_id: str, *, timeout: float = 600.0, poll_interval: float = 1.0, max_interval: float = 10.0
    ) -> Task:
        """Poll until the task succeeded, failed or was canceled, waiting longer each time;
        :class:`TaskWaitTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for delay in backoff(poll_interval, max_interval):
            task = self.get_task(task_id)
            if task["status"] in TERMINAL_STATUSES:
                return task
            if time.monotonic() + delay > deadline:
                raise TaskWaitTimeout(task)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - backoff() never ends
