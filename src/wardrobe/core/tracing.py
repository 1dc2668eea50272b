"""One trace id for a piece of work wherever it goes: the HTTP request that started it, the outbox
message it wrote, the task it created and every run of that task (in any worker, after any
crash), the vendor calls and the push events.

The id lives in ``request_id_var`` (every log line has it as ``request_id``; realtime pushes as
``traceId``); what else is bound for a stretch of work (a task's public id as ``task``) is in
structlog's context variables, which the log processors merge into every line, the standard
library's included. Whatever carries work onwards stores the id: the ``tasks`` and ``outbox`` rows
(``trace_id``, and ``trace_parent``, the W3C traceparent, when OpenTelemetry is on), so that a
worker resuming a task long after the request binds the same id again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import structlog

from wardrobe.core import telemetry
from wardrobe.core.context import request_id_var
from wardrobe.core.logging import get_logger

UNSET = "-"
log = get_logger("wardrobe.vendor")


def current_trace_id() -> str | None:
    """The id of the work in hand, or None outside of any (a bare process)."""
    rid = request_id_var.get()
    return None if rid == UNSET else rid


def stamp() -> dict[str, str | None]:
    """The columns a row carrying this work onwards stores (``trace_id``, ``trace_parent``)."""
    return {"trace_id": current_trace_id(), "trace_parent": telemetry.current_traceparent()}


def job_trace_id(name: str) -> str:
    """A fresh id for one run of a periodic job: its lines are found together, and never mixed
    with another run's under "-"."""
    return f"job-{name}-{uuid.uuid4().hex[:8]}"


@contextmanager
def bound(trace_id: str | None, **fields: Any) -> Iterator[None]:
    """Bind ``trace_id`` (the current one kept when None) and ``fields`` for every log line
    written inside, in this task and the tasks it starts."""
    token = request_id_var.set(trace_id) if trace_id else None
    try:
        with structlog.contextvars.bound_contextvars(**fields):
            yield
    finally:
        if token is not None:
            request_id_var.reset(token)


async def _send_trace_id(request: httpx.Request) -> None:
    request.extensions["wardrobe_started"] = time.perf_counter()
    trace_id = current_trace_id()
    # Not a signed header (the vendors sign the body and their own headers, if anything), so
    # adding it changes no signature; the vendor's support can then find our call by our id.
    if trace_id is not None and "x-request-id" not in request.headers:
        request.headers["X-Request-Id"] = trace_id


def vendor_http_hooks(vendor: str) -> dict[str, list[Any]]:
    """httpx ``event_hooks`` for a vendor's client: our trace id goes out as ``X-Request-Id`` and
    every answer is logged (vendor, method, path without the query, status, time) under it."""

    async def log_answer(response: httpx.Response) -> None:
        started = response.request.extensions.get("wardrobe_started")
        log.info(
            "vendor_http",
            vendor=vendor,
            method=response.request.method,
            path=response.request.url.path,
            status=response.status_code,
            latency_ms=round((time.perf_counter() - started) * 1000, 1) if started is not None else None,
        )

    return {"request": [_send_trace_id], "response": [log_answer]}
