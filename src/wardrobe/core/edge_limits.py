"""Rate limits at the edge and the client's true address behind trusted proxies.

Every request (but probes, metrics and the Socket.IO transport) takes one unit from:

- the **global window of its client IP**;
- the **window of its user** when it carries a valid access token (the token's signature and
  expiry are checked here; the route still checks the login session);
- the **window of its endpoint class**: ``auth`` (``/api/v1/auth/*``: SMS codes, login, refresh,
  password reset) per IP, stricter; ``task_create`` (``POST /api/v1/tasks``) per user;
  ``write`` (other non-GET requests) per user, or per IP when anonymous.

Per-feature windows are taken when a task is created (the feature is known only then), and the
SMS and login services keep their own per-phone and per-account windows.

The windows live in Redis (``limits`` moving windows: one atomic script per window, so N API
processes count as one) or in memory when embedded. If the store is unreachable, ``auth`` and
``task_create`` **fail closed** (503 ``DEPENDENCY_UNAVAILABLE``: an SMS flood or a login brute
force must not get through because Redis is down); everything else **fails open** and is
counted, and ``/health/ready`` reports the state.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import orjson
from limits import RateLimitItem
from starlette.types import ASGIApp, Receive, Scope, Send

from wardrobe.core.envelope import error_body
from wardrobe.core.errors import AppError, ErrorCode, RateLimited
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import RATE_LIMIT_STORE_FAILURES, RATE_LIMITED
from wardrobe.core.ratelimit import parse_limits

log = get_logger("wardrobe.ratelimit")
_EXEMPT_PREFIXES = ("/health", "/metrics", "/socket.io")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STORE_LOG_EVERY_SECONDS = 10.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EndpointClass(StrEnum):
    AUTH = "auth"
    TASK_CREATE = "task_create"
    WRITE = "write"
    READ = "read"


FAIL_CLOSED = frozenset({EndpointClass.AUTH, EndpointClass.TASK_CREATE})


def classify(method: str, path: str) -> EndpointClass | None:
    """The endpoint class of a request, or None for what is never limited."""
    if path.startswith(_EXEMPT_PREFIXES):
        return None
    if path.startswith("/api/v1/auth/"):
        return EndpointClass.AUTH
    if method == "POST" and path.rstrip("/") == "/api/v1/tasks":
        return EndpointClass.TASK_CREATE
    return EndpointClass.READ if method in _READ_METHODS else EndpointClass.WRITE


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        found = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def client_address(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address: the socket peer, unless the peer is a trusted proxy; then the
    right-most address of X-Forwarded-For that is not itself a trusted proxy (the left part of
    the header is whatever the client wrote and is never believed)."""
    peer_ip = _address(peer)
    if not trusted or peer_ip is None or not any(peer_ip in net for net in trusted) or not forwarded_for:
        return peer
    hops = [h for h in (part.strip() for part in forwarded_for.split(",")) if h]
    chosen = peer
    for hop in reversed(hops):
        hop_ip = _address(hop)
        if hop_ip is None:
            break  # garbage: stop at the last hop we could trust
        chosen = str(hop_ip)
        if not any(hop_ip in net for net in trusted):
            break
    return chosen


class EdgeLimits:
    """The windows configured for this process, parsed once."""

    def __init__(
        self,
        *,
        per_ip: str,
        per_user: str,
        per_class: dict[EndpointClass, str],
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.per_ip = parse_limits(per_ip) if per_ip else []
        self.per_user = parse_limits(per_user) if per_user else []
        self.per_class = {cls: parse_limits(spec) for cls, spec in per_class.items() if spec}
        self.store_ok = True  # the last answer of the store (for /health/ready)


class RateLimitMiddleware:
    """Pure ASGI, inside EdgeMiddleware (so refusals carry the request id and are logged)."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str] = ()) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)
        self._last_store_log = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        peer = scope.get("client") or ("unknown", 0)
        ip = client_address(peer[0], headers.get("x-forwarded-for"), self.trusted)
        if ip != peer[0]:
            scope["client"] = (ip, peer[1])
        endpoint = classify(scope.get("method", "GET"), scope.get("path", ""))
        infra = getattr(getattr(scope.get("app"), "state", None), "infra", None)
        if endpoint is not None and infra is not None and infra.edge_limits.enabled:
            refusal = await self._check(infra, endpoint, ip, headers.get("authorization"))
            if refusal is not None:
                await self._refuse(send, refusal)
                return
        await self.app(scope, receive, send)

    async def _check(self, infra: Any, endpoint: EndpointClass, ip: str, authorization: str | None) -> AppError | None:
        limits: EdgeLimits = infra.edge_limits
        user_id = _user_of(infra, authorization)
        windows: list[tuple[list[RateLimitItem], tuple[str, ...]]] = [(limits.per_ip, ("ip", ip))]
        if user_id is not None:
            windows.append((limits.per_user, ("user", user_id)))
        class_items = limits.per_class.get(endpoint)
        if class_items:
            who = ("ip", ip) if endpoint is EndpointClass.AUTH or user_id is None else ("user", user_id)
            windows.append((class_items, (endpoint.value, *who)))
        try:
            await infra.limiter.hit_all(windows)
            limits.store_ok = True
        except RateLimited as refused:
            RATE_LIMITED.labels(endpoint.value).inc()
            return refused
        except Exception as exc:
            limits.store_ok = False
            closed = endpoint in FAIL_CLOSED
            RATE_LIMIT_STORE_FAILURES.labels("closed" if closed else "open").inc()
            self._log_store_failure(exc)
            if closed:
                return AppError(ErrorCode.DEPENDENCY_UNAVAILABLE, headers={"Retry-After": "5"})
        return None

    def _log_store_failure(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_store_log >= STORE_LOG_EVERY_SECONDS:
            self._last_store_log = now
            log.warning("rate_limit_store_unavailable", error_type=type(exc).__name__)

    async def _refuse(self, send: Send, error: AppError) -> None:
        body = orjson.dumps(error_body(error.code, error.data))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), str(v).encode()) for k, v in (error.headers or {}).items()]
        await send({"type": "http.response.start", "status": error.code.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _user_of(infra: Any, authorization: str | None) -> str | None:
    """The user id of a valid bearer token, else None (the route answers the 401 itself)."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    try:
        return str(infra.tokens.decode_access(authorization[7:].strip()).user_id)
    except AppError:
        return None
