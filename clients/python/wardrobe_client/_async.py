"""The asyncio client (httpx.AsyncClient): the same calls as the blocking one, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
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


class AsyncWardrobeClient:
    """The Wardrobe API with an API key (``wk_…``), for asyncio. Use it as an async context
    manager or ``await aclose()`` it. ``base_url`` is the API's origin, e.g. ``https://api.example.com``."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        language: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        common, self._auth = client_headers(api_key, language)
        self._http = httpx.AsyncClient(base_url=base_url, headers=common, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncWardrobeClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, call: Call) -> Any:
        """Send one API request with the key; ``data`` of its envelope."""
        headers = {**self._auth, **call.headers}
        response = await self._http.request(call.method, call.path, json=call.json, params=call.params, headers=headers)
        return unwrap(response)

    async def upload(self, content: bytes, *, filename: str, content_type: ContentType) -> StoredObject:
        """Ask for a grant, send the bytes as it says, have them verified: use the answer's
        ``object_key`` as a task's image input."""
        grant = cast(UploadGrant, await self.request(upload_call(filename, content_type, len(content))))
        method, url, headers = put_request(grant)
        sent = await self._http.request(method, url, content=content, headers=headers)
        if not sent.is_success:
            unwrap(sent)
        return cast(StoredObject, await self.request(complete_call(grant["object_key"])))

    async def create_task(self, feature: str, inputs: Mapping[str, Any], *, idempotency_key: str | None = None) -> Task:
        """Run a feature. Without ``idempotency_key`` a new one is sent: pass your own to retry a
        creation whose answer was lost (the same key and body return the same task)."""
        call = create_task_call(feature, inputs, idempotency_key or new_idempotency_key())
        return cast(Task, await self.request(call))

    async def get_task(self, task_id: str) -> Task:
        return cast(Task, await self.request(get_task_call(task_id)))

    async def list_tasks(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        status: TaskStatus | None = None,
        feature: str | None = None,
    ) -> TaskPage:
        """One page, newest first; pass its ``next_cursor`` as ``cursor`` for the next."""
        return cast(TaskPage, await self.request(list_tasks_call(limit, cursor, status, feature)))

    async def iter_tasks(
        self, *, status: TaskStatus | None = None, feature: str | None = None, page_size: int = 50
    ) -> AsyncIterator[Task]:
        """Every task, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_tasks(limit=page_size, cursor=cursor, status=status, feature=feature)
            for task in page["items"]:
                yield task
            cursor = page["next_cursor"]
            if not cursor:
                return

    async def wait_for_task(
        self,
        task_id: str,
        *,
        timeout: float = 600.0,  # noqa: ASYNC109 - the polling's deadline, named as in the blocking client
        poll_interval: float = 1.0,
        max_interval: float = 10.0,
    ) -> Task:
        """Poll until the task succeeded, failed or was canceled, waiting longer each time;
        :class:`TaskWaitTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for delay in backoff(poll_interval, max_interval):
            task = await self.get_task(task_id)
            if task["status"] in TERMINAL_STATUSES:
                return task
            if time.monotonic() + delay > deadline:
                raise TaskWaitTimeout(task)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - backoff() never ends
