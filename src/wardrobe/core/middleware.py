"""One pure-ASGI middleware for the edge: request id, language, body size cap, access log, metrics.

Pure ASGI (not BaseHTTPMiddleware) because it wraps every request: no extra task or body copy.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wardrobe.core import telemetry
from wardrobe.core.context import lang_var, pick_language, request_id_var, user_id_var
from wardrobe.core.envelope import error_body
from wardrobe.core.errors import ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
log = get_logger("wardrobe.http")


class BodyTooLarge(HTTPException):
    """An HTTPException so that FastAPI's body parser re-raises it instead of turning it into 400."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_caps: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Path prefix -> cap, for routes whose bodies are not JSON (presigned uploads); the longest
        # matching prefix wins. Those handlers enforce their own, tighter bound on top.
        self.body_caps = sorted((body_caps or {}).items(), key=lambda item: -len(item[0]))

    def _cap_for(self, path: str) -> int:
        for prefix, cap in self.body_caps:
            if path.startswith(prefix):
                return cap
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        # With OpenTelemetry on, the request id is the trace id (a caller's traceparent honoured),
        # so a log line and its trace are found by one id.
        request_id = telemetry.active_trace_id() or (incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex)
        rid_token = request_id_var.set(request_id)
        lang_token = lang_var.set(pick_language(headers.get("accept-language")))
        user_token = user_id_var.set(None)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        declared = headers.get("content-length")
        limit = self._cap_for(scope.get("path", ""))
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await self._reject_too_large(send_wrapper)
            else:
                await self.app(scope, self._limited_receive(receive, limit), send_wrapper)
        except BodyTooLarge:
            if not response_started:
                await self._reject_too_large(send_wrapper)
        except Exception as exc:
            # Handled here rather than by Starlette's outermost error middleware, so the answer
            # still carries the request id and is logged with it. Nothing about the cause leaks.
            log.exception("unhandled_error", error_type=type(exc).__name__)
            if not response_started:
                await self._send_error(send_wrapper, ErrorCode.INTERNAL_ERROR)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "-")
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template).observe(elapsed)
            if status >= 500 or template not in _QUIET_ROUTES:
                log.info(
                    "http_request",
                    method=method,
                    route=template,
                    status=status,
                    latency_ms=round(elapsed * 1000, 2),
                )
            request_id_var.reset(rid_token)
            lang_var.reset(lang_token)
            user_id_var.reset(user_token)

    def _limited_receive(self, receive: Receive, limit: int) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        return wrapped

    async def _reject_too_large(self, send: Send) -> None:
        await self._send_error(send, ErrorCode.PAYLOAD_TOO_LARGE, close=True)

    async def _send_error(self, send: Send, code: ErrorCode, close: bool = False) -> None:
        body = orjson.dumps(error_body(code))
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": code.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# Probes and scrapes would drown the access log; they are still counted in the metrics.
_QUIET_ROUTES = frozenset({"/health", "/metrics"})
