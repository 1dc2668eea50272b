"""Webhooks of the RunningHub peer: the TASK_END post, its retries, the record behind
``getWebhookDetail``/``retryWebhook``, and the thread their timers run in.

RunningHub posts ``{"event":"TASK_END","taskId":…,"eventData":"<JSON text of the /outputs
answer>"}`` with no signature. Anything but a 2xx within the timeout is retried up to three times
(``retryCount`` 3 observed, about a minute apart; scaled down here, or only when a test nudges).

Deliveries and the auto-lifecycle timers run in the peer's own event loop on a thread of its own
(``Courier``), so they go on whatever loop the test is in, or none; the retry loop and ``Changes``,
which wakes waiters in any loop so that tests await "attempt n" or "delivered" instead of sleeping,
are shared with the other peers (``tests/peers/delivery.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

# Changes is re-exported: tencent_scf.py imports it from here.
from tests.peers.delivery import Changes as Changes
from tests.peers.delivery import RetriedDelivery, post_until_accepted

CHINA = timezone(timedelta(hours=8))
WEBHOOK_RETRIES = 3
# Observed about a minute apart; scaled down 1000x.
SCALED_WEBHOOK_RETRY_DELAYS = (0.06, 0.06, 0.06)
DEFAULT_WEBHOOK_TIMEOUT = 2.0


def stamp() -> str:
    """RunningHub's time format in records: ``2025-03-25T16:05:07`` (China time)."""
    return datetime.now(CHINA).strftime("%Y-%m-%dT%H:%M:%S")


class Courier:
    """An event loop on a daemon thread, started on first use and stopped by ``close``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the peer is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="runninghub-peer-courier", daemon=True)
                thread.start()
                if not ready.wait(10):
                    raise RuntimeError("the peer's courier loop did not start")
                self._loop, self._thread = loop, thread
            return self._loop

    def spawn(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        loop = self._running_loop()
        asyncio.run_coroutine_threadsafe(make(), loop)

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._running_loop().call_soon_threadsafe(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        loop = self._running_loop()
        loop.call_soon_threadsafe(loop.call_later, delay, callback)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._closed = True
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    number: int  # within its delivery: 1 is the first post, 2-4 the retries
    status: int | None  # None: no HTTP answer at all
    body: str
    error: str = ""  # "timeout" or the exception's name when there was no answer

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookEvent:
    """What ``getWebhookDetail`` reports for a task: one event, every attempt of every round."""

    def __init__(self, event_id: str, task_id: str, api_key: str, url: str, event_data: str) -> None:
        self.id = event_id
        self.task_id = task_id
        self.api_key = api_key
        self.url = url
        self.event_data = event_data
        self.create_time = stamp()
        self.update_time = self.create_time
        self.attempts: list[WebhookAttempt] = []
        self.last_response = ""
        self._lock = threading.Lock()

    def record(self, attempt: WebhookAttempt, url: str) -> None:
        with self._lock:
            self.attempts.append(attempt)
            self.update_time = stamp()
            if attempt.status is None:
                self.last_response = f'I/O error on POST request for "{url}": {attempt.error}'
            else:
                self.last_response = attempt.body if attempt.ok else f"{attempt.status} {attempt.body}"[:500]

    @property
    def callback_status(self) -> str:
        with self._lock:
            if not self.attempts:
                return "PENDING"
            return "SUCCESS" if self.attempts[-1].ok else "FAILED"

    @property
    def retry_count(self) -> int:
        with self._lock:
            return max(0, len(self.attempts) - 1)

    def detail(self) -> dict[str, Any]:
        with self._lock:
            update_time, response = self.update_time, self.last_response
        return {
            "id": self.id,
            "userApiKey": "*" * len(self.api_key),
            "taskId": self.task_id,
            "webhookUrl": self.url,
            "eventData": self.event_data,
            "callbackStatus": self.callback_status,
            "callbackResponse": response,
            "retryCount": self.retry_count,
            "createTime": self.create_time,
            "updateTime": update_time,
        }


async def post_webhook(http: httpx.AsyncClient, url: str, body: dict[str, Any], number: int) -> WebhookAttempt:
    """One try: the JSON post and what came back (no retry)."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        response = await http.post(url, content=content, headers={"Content-Type": "application/json"})
    except httpx.TimeoutException:
        return WebhookAttempt(number, None, "", "timeout")
    except httpx.HTTPError as exc:
        return WebhookAttempt(number, None, "", type(exc).__name__)
    return WebhookAttempt(number, response.status_code, response.text[:2000])


class Delivery(RetriedDelivery[WebhookAttempt]):
    """One round of posts of one body: the first try and up to ``retries`` more."""

    def __init__(
        self,
        *,
        url: str,
        body: dict[str, Any],
        event: WebhookEvent | None,
        changes: Changes,
        courier: Courier,
        timeout: float,
        delays: tuple[float, ...] | None,
        retries: int = WEBHOOK_RETRIES,
    ) -> None:
        if delays is not None and len(delays) < retries:
            raise ValueError(f"one delay per retry: {retries}")
        super().__init__(changes)
        self.url = url
        self.body = body
        self.event = event  # None for posts a test made up (stale events): no record
        self.started = False
        self._courier = courier
        self._timeout = timeout
        self._delays = delays
        self._retries = retries
        self._nudges = 0
        self._wake: asyncio.Event | None = None

    @property
    def task_id(self) -> str:
        return str(self.body.get("taskId", ""))

    @property
    def event_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body["eventData"])
        return data

    def start(self) -> None:
        self.started = True
        self._courier.spawn(self._run)

    def nudge(self) -> None:
        """Retry now instead of at the next scheduled time (the only trigger without delays)."""
        self._courier.call_soon(self._on_nudge)

    def _on_nudge(self) -> None:
        self._nudges += 1
        if self._wake is not None:
            self._wake.set()

    async def wait_delivered(self, within: float = 30.0) -> WebhookAttempt:
        await self._changes.wait_for(lambda: self.finished, within)
        if self.error is not None:
            raise AssertionError(f"delivery failed: {self.error!r}")
        if not self.delivered:
            raise AssertionError(f"gave up after {[(a.status, a.error) for a in self.attempts]}")
        return self.attempts[-1]

    async def wait_finished(self, within: float = 30.0) -> list[WebhookAttempt]:
        await self._changes.wait_for(lambda: self.finished, within)
        return list(self.attempts)

    async def _tries(self) -> None:
        # Made in the courier loop, where the waits happen; a nudge that came first still counts.
        self._wake = asyncio.Event()
        if self._nudges:
            self._wake.set()
        async with httpx.AsyncClient(timeout=self._timeout) as http:
            await post_until_accepted(
                lambda number: post_webhook(http, self.url, self.body, number),
                accepted=lambda attempt: attempt.ok,
                retries=self._retries,
                delays=self._delays,
                pause=self._pause,
                record=self._record,
            )

    async def _record(self, attempt: WebhookAttempt, accepted: bool, last: bool) -> None:
        if self.event is not None:
            self.event.record(attempt, self.url)
        await super()._record(attempt, accepted, last)

    async def _pause(self, delay: float | None) -> None:
        assert self._wake is not None  # set by _tries before the first post
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()
