"""Live progress over Socket.IO: python-socketio mounted at ``/socket.io`` beside the API.

A client connects with ``auth: {token: <access_token>, lang?: "zh" | "en"}`` (``lang``: see
``socket_language``). The handshake is refused unless the page's ``Origin`` (when a browser sends
one) is this service's own origin or one of ``WARDROBE_CORS_ORIGINS``, the address and the user
are within their connect windows, the token and its login session are valid (``check_session``, as
for any request), and the user holds fewer than ``WARDROBE_SOCKETS_PER_USER`` sockets on all
processes. The socket then joins its user's room.

A socket lives no longer than its session and its token: every ``subscribe`` checks the session
again; a revoked session's sockets are dropped by every process as soon as the revocation commits
(revocations.py); and a socket is dropped when its access token expires, so the client reconnects
with a fresh one. Before a drop the server emits ``session.ended`` with the reason's code.

``subscribe`` ``{task_ids: [...]}`` joins the rooms of the caller's own tasks and acknowledges
with their current state, so a client that reconnects starts from the truth; ids that are not the
caller's are listed as refused and never joined. Staff whose role grants ``tasks:read`` (the
support console) may subscribe to any user's task. Staff with ``catalog:read`` may also
``subscribe_providers`` to hear ``provider.health`` (provider_feed.py). Roles are read from the
database at each subscribe, like every permission check.

Events are ``{type, payload, traceId}``. Who emits them: ``TaskEvents`` (events.py), after commit,
in whichever process changed the task. Across processes they travel through Redis
(``AsyncRedisManager``): an API process relays to its own sockets what any process published. With
no Redis (embedded mode) the manager is in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import socketio
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from wardrobe.core.context import lang_var, pick_language, request_id_var
from wardrobe.core.db import finish
from wardrobe.core.edge_limits import client_address, parse_networks
from wardrobe.core.errors import AppError, ErrorCode, RateLimited
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import SOCKET_EVENTS, SOCKETS_CONNECTED
from wardrobe.core.permissions import Permission, has_permission
from wardrobe.core.principal import second_factor_missing, verified_session, verified_user
from wardrobe.core.ratelimit import RateLimiter, parse_limits
from wardrobe.core.security import AccessClaims, TokenCodec
from wardrobe.models import Task
from wardrobe.modules.tasks.presenter import TaskViews, present
from wardrobe.realtime.http_docs import METHODS
from wardrobe.realtime.nodes import name_sessions
from wardrobe.realtime.provider_feed import ProviderFeed, ReadViews
from wardrobe.realtime.revocations import Revoked
from wardrobe.realtime.seats import RENEW_SECONDS, MemorySeats, RedisSeats, Seats
from wardrobe.settings import Settings

log = get_logger("wardrobe.realtime")
MAX_SUBSCRIBE = 50  # task ids per subscribe call
SESSION_ENDED = "session.ended"


def plain(value: Any) -> Any:
    """JSON types only (datetimes as ISO 8601): what Socket.IO and the Redis channel carry."""
    return orjson.loads(orjson.dumps(value))


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def task_room(public_id: str, lang: str = "zh") -> str:
    """The room of a task's sockets that read it in ``lang``: a failed task's message differs by
    language, so English sockets hear their own copy of that push (events.py)."""
    return f"task:{public_id}" if lang != "en" else f"task:{public_id}:en"


def socket_language(auth: Any, environ: Mapping[str, Any]) -> str:
    """The language a socket reads task messages in: ``auth.lang`` (``zh`` or ``en``) when the
    client gives it (a mini program's socket has no Accept-Language of its own), else the
    handshake's ``Accept-Language`` as for any request, else zh."""
    lang = auth.get("lang") if isinstance(auth, dict) else None
    if lang in ("zh", "en"):
        return str(lang)
    return pick_language(environ.get("HTTP_ACCEPT_LANGUAGE"))


def channel(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}:socketio"


def client_manager(settings: Settings, *, write_only: bool = False) -> socketio.AsyncManager:
    """Redis pub/sub between processes when Redis is configured; in process otherwise."""
    if settings.redis_url:
        return socketio.AsyncRedisManager(settings.redis_url, channel=channel(settings), write_only=write_only)
    return socketio.AsyncManager()


def same_origins(environ: Mapping[str, Any]) -> set[str]:
    """The origins this request was addressed to: its Host with its scheme, and the one a proxy
    in front says it was (X-Forwarded-Proto/-Host). A browser cannot set those headers on a
    cross-site request, so they cannot widen what a foreign page may open."""
    host = environ.get("HTTP_HOST")
    if not host:
        return set()
    scheme = environ.get("wsgi.url_scheme", "http")
    found = {f"{scheme}://{host}"}
    forwarded_proto = environ.get("HTTP_X_FORWARDED_PROTO")
    forwarded_host = environ.get("HTTP_X_FORWARDED_HOST")
    if forwarded_proto or forwarded_host:
        proto = (forwarded_proto or scheme).split(",")[0].strip()
        found.add(f"{proto}://{(forwarded_host or host).split(',')[0].strip()}")
    return found


def _methods_or_405(app: ASGIApp) -> ASGIApp:
    """python-engineio answers other methods 405 without the ``Allow`` header RFC 9110 asks for;
    answer them here, naming the methods it serves."""
    allow = ", ".join(METHODS).encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in METHODS:
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"allow", allow)]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": b"Method Not Allowed"})
            return
        await app(scope, receive, send)

    return guarded


class DirectWebsockets:
    """Websocket connections to Socket.IO go straight to it, past the HTTP middleware and routing.

    A websocket is one ASGI call that lasts as long as the connection, so every layer it passes
    through keeps a frame (and some a closure) alive for each socket: the edge and rate-limit
    middleware (which let websockets through untouched), FastAPI's exception and exit-stack layers,
    the router and the mount. Those come to about 6 KiB of the ~50 KiB of Python objects a socket
    costs (tracemalloc). Plain HTTP to Socket.IO (long-polling) still takes the full path, with its
    body caps and rate limits. A websocket is checked by the hub itself: token, session and connect
    rate."""

    def __init__(self, app: ASGIApp, sockets: ASGIApp, prefix: str = "/socket.io/") -> None:
        self.app = app
        self.sockets = sockets
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"].startswith(self.prefix):
            await self.sockets(scope, receive, send)
        else:
            await self.app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class HubParts:
    """What the hub reads once the process is up: given by ``attach`` in the app's lifespan."""

    session_factory: async_sessionmaker[AsyncSession]
    tokens: TokenCodec
    limiter: RateLimiter
    views: TaskViews
    # The provider views of GET /api/v1/admin/providers, read afresh (provider.health).
    provider_views: ReadViews


@dataclass(slots=True)
class Held:
    """A socket of this process: whose it is, and the timer that drops it when its token expires."""

    claims: AccessClaims
    expiry: asyncio.TimerHandle | None = field(default=None)
    role: str = ""  # as the database said at the last check (connect, subscribe)
    mfa: bool = False  # whether the login session was opened with a TOTP code (same check)
    lang: str = "zh"  # socket_language at connect


class RealtimeHub:
    """The Socket.IO server of an API process and its handlers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.parts: HubParts | None = None  # set by ``attach`` in the app's lifespan, before any connect
        self._origins = frozenset(settings.cors_origins)
        self._trusted = parse_networks(settings.trusted_proxies)
        self._per_ip = (
            parse_limits(settings.socket_connect_limit_per_ip) if settings.socket_connect_limit_per_ip else []
        )
        self._per_user = (
            parse_limits(settings.socket_connect_limit_per_user) if settings.socket_connect_limit_per_user else []
        )
        self.seats: Seats = MemorySeats()
        self.held: dict[str, Held] = {}  # this process's sockets, by sid
        self._by_user: dict[int, set[str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=client_manager(settings),
            # A callable, never []: an empty list would switch python-engineio's Origin check off.
            cors_allowed_origins=self._origin_allowed,
            logger=False,
            engineio_logger=False,
        )
        name_sessions(self.sio, settings.socketio_node)  # session ids name their process (nodes.py)
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("subscribe", self._subscribe)
        self.sio.on("unsubscribe", self._unsubscribe)
        self.sio.on("subscribe_providers", self._subscribe_providers)
        self.sio.on("unsubscribe_providers", self._unsubscribe_providers)
        self.providers = ProviderFeed(self.sio, settings.socket_provider_push_seconds)

    def asgi_app(self) -> ASGIApp:
        return _methods_or_405(socketio.ASGIApp(self.sio, socketio_path="socket.io"))

    def attach(self, parts: HubParts, redis: Redis | None) -> None:
        """The process's parts, once its lifespan has built them; seats are counted in ``redis``
        across processes when there is one."""
        self.parts = parts
        self.providers.attach(parts.provider_views)
        if redis is not None:
            self.seats = RedisSeats(redis, self.settings.redis_key_prefix)

    async def start(self) -> None:
        if isinstance(self.seats, RedisSeats) and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="socket-seats")

    async def stop(self) -> None:
        await self.providers.stop()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        for held in self.held.values():
            if held.expiry is not None:
                held.expiry.cancel()

    def _parts(self) -> HubParts:
        if self.parts is None:
            raise socketio.exceptions.ConnectionRefusedError("starting")
        return self.parts

    def _origin_allowed(self, origin: str | None, environ: Mapping[str, Any]) -> bool:
        # Called only when the request carries an Origin. WeChat mini programs and native clients
        # send none and are admitted on their token alone (a page elsewhere cannot omit it).
        if origin is None or "*" in self._origins or origin in self._origins:
            return True
        allowed = origin in same_origins(environ)
        if not allowed:
            SOCKET_EVENTS.labels("connect", "ORIGIN_REFUSED").inc()
        return allowed

    def _client_ip(self, environ: Mapping[str, Any]) -> str:
        return client_address(
            str(environ.get("REMOTE_ADDR") or "unknown"), environ.get("HTTP_X_FORWARDED_FOR"), self._trusted
        )

    @staticmethod
    def _refuse(code: ErrorCode, **data: Any) -> socketio.exceptions.ConnectionRefusedError:
        SOCKET_EVENTS.labels("connect", code.name).inc()
        if data:
            return socketio.exceptions.ConnectionRefusedError(code.name, data)
        return socketio.exceptions.ConnectionRefusedError(code.name)

    async def _take_connect_units(self, parts: HubParts, ip: str, user_id: int | None) -> None:
        windows = [(self._per_ip, ("socket-ip", ip))]
        if user_id is not None:
            windows.append((self._per_user, ("socket-user", str(user_id))))
        try:
            await parts.limiter.hit_all(windows)
        except RateLimited as exc:
            raise self._refuse(ErrorCode.RATE_LIMITED, retry_after=int(exc.headers.get("Retry-After", "1"))) from None
        except Exception as exc:
            # Open when the store is down: sockets only carry what the API already allows.
            log.warning("socket_limit_store_unavailable", error_type=type(exc).__name__)

    async def _connect(self, sid: str, environ: Mapping[str, Any], auth: Any) -> None:
        parts = self._parts()
        ip = self._client_ip(environ)
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            await self._take_connect_units(parts, ip, None)
            raise self._refuse(ErrorCode.AUTH_REQUIRED)
        try:
            claims = parts.tokens.decode_access(token)
        except AppError as exc:
            await self._take_connect_units(parts, ip, None)
            raise self._refuse(exc.code) from None
        await self._take_connect_units(parts, ip, claims.user_id)
        try:
            async with parts.session_factory() as session:
                user = await verified_user(session, claims)
        except AppError as exc:
            raise self._refuse(exc.code) from None
        if not await self._seat(claims.user_id, sid):
            raise self._refuse(ErrorCode.CONNECTION_LIMIT_REACHED, limit=self.settings.sockets_per_user)
        try:
            await self.sio.save_session(sid, {"user_id": claims.user_id, "session_id": claims.session_id})
            await self.sio.enter_room(sid, user_room(claims.user_id))
        except BaseException:
            await self._unseat(claims.user_id, sid)
            raise
        self._hold(sid, claims, user.role, socket_language(auth, environ))
        SOCKET_EVENTS.labels("connect", "accepted").inc()

    async def _seat(self, user_id: int, sid: str) -> bool:
        try:
            return await self.seats.take(user_id, sid, self.settings.sockets_per_user)
        except Exception as exc:
            log.warning("socket_seats_unavailable", error_type=type(exc).__name__)
            return True

    async def _unseat(self, user_id: int, sid: str) -> None:
        try:
            await self.seats.release(user_id, sid)
        except Exception as exc:
            log.warning("socket_seats_unavailable", error_type=type(exc).__name__)

    def _hold(self, sid: str, claims: AccessClaims, role: str, lang: str) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, claims.expires_at - time.time())
        held = Held(claims, role=role, lang=lang)
        held.expiry = loop.call_later(delay, self._end_soon, sid, ErrorCode.AUTH_TOKEN_EXPIRED)
        self.held[sid] = held
        self._by_user.setdefault(claims.user_id, set()).add(sid)
        SOCKETS_CONNECTED.inc()

    async def _disconnect(self, sid: str, *_: Any) -> None:
        self.providers.forget(sid)
        held = self.held.pop(sid, None)
        if held is None:
            return
        SOCKETS_CONNECTED.dec()
        if held.expiry is not None:
            held.expiry.cancel()
        user_id = held.claims.user_id
        sids = self._by_user.get(user_id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._by_user[user_id]
        await self._unseat(user_id, sid)

    def _end_soon(self, sid: str, code: ErrorCode) -> None:
        task = asyncio.ensure_future(self.end(sid, code))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def end(self, sid: str, code: ErrorCode) -> None:
        """Tell the socket why (``session.ended``), then drop it."""
        if sid not in self.held:
            return
        SOCKET_EVENTS.labels("drop", code.name).inc()
        body = {"type": SESSION_ENDED, "payload": {"code": code.name}, "traceId": request_id_var.get()}
        with contextlib.suppress(Exception):
            await self.sio.emit(SESSION_ENDED, body, to=sid)
        await self.sio.disconnect(sid)

    async def on_revoked(self, revoked: Revoked) -> None:
        """Drop this process's sockets of the sessions that ``revoked`` ended."""
        for sid in list(self._by_user.get(revoked.user_id, ())):
            held = self.held.get(sid)
            if held is not None and revoked.covers(held.claims.session_id):
                await self.end(sid, ErrorCode.AUTH_SESSION_REVOKED)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self.seats.renew([(h.claims.user_id, sid) for sid, h in self.held.items()])
            except Exception as exc:
                log.warning("socket_seats_unavailable", error_type=type(exc).__name__)

    @staticmethod
    def _task_ids(data: Any) -> list[str] | None:
        ids = data.get("task_ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > MAX_SUBSCRIBE:
            return None
        if not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
            return None
        return list(dict.fromkeys(ids))

    async def _recheck(self, sid: str) -> tuple[Held | None, ErrorCode | None]:
        """The socket's holder while its token and session are still good; else why not (and the
        socket is being dropped)."""
        held = self.held.get(sid)
        if held is None:
            return None, ErrorCode.AUTH_REQUIRED
        code: ErrorCode | None = ErrorCode.AUTH_TOKEN_EXPIRED if held.claims.expires_at <= time.time() else None
        if code is None:
            try:
                async with self._parts().session_factory() as session:
                    user, held.mfa = await verified_session(session, held.claims)
                    held.role = user.role
            except AppError as exc:
                code = exc.code
        if code is not None:
            self._end_soon(sid, code)
            return None, code
        return held, None

    async def _subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        ids = self._task_ids(data)
        if ids is None:
            return {"ok": False, "code": ErrorCode.VALIDATION_FAILED.name, "tasks": [], "refused": []}
        held, refusal = await self._recheck(sid)
        if held is None:
            code = (refusal or ErrorCode.AUTH_REQUIRED).name
            return {"ok": False, "code": code, "tasks": [], "refused": ids}
        parts = self._parts()
        if self._staff(held, Permission.TASKS_READ):
            # Support staff follow any user's task (the console's task page).
            owned_ids: tuple[Any, ...] = (Task.public_id.in_(ids),)
        else:
            owned_ids = Task.user_id == held.claims.user_id, Task.public_id.in_(ids), Task.deleted_at.is_(None)
        async with parts.session_factory() as session:
            owned = set(await session.scalars(select(Task.public_id).where(*owned_ids)))
            await finish(session)
        # Rooms first, snapshot second: a change committed in between reaches the client as an
        # event (after the ack, or before it and again in it). Read the other way round, a task
        # ending between the read and the join would look unfinished to the client forever.
        for public_id in owned:
            await self.sio.enter_room(sid, task_room(public_id, held.lang))
        async with parts.session_factory() as session:
            tasks = list(await session.scalars(select(Task).where(*owned_ids)))
            # This handler's context is its own: the snapshot takes the socket's language.
            reset = lang_var.set(held.lang)
            try:
                views = await present(session, parts.views, tasks)
            finally:
                lang_var.reset(reset)
            await finish(session)
        # Another user's task and a task that does not exist look the same: refused.
        return {"ok": True, "tasks": plain(views), "refused": [i for i in ids if i not in owned]}

    def _staff(self, held: Held, permission: Permission) -> bool:
        """Staff reach beyond their own tasks as on the staff routes: with the permission, and for
        admins where a second factor is required, from a TOTP session."""
        return has_permission(held.role, permission) and not second_factor_missing(
            held.role, held.mfa, self.settings, permission
        )

    async def _unsubscribe(self, sid: str, data: Any) -> dict[str, Any]:
        ids = self._task_ids(data)
        if ids is None:
            return {"ok": False, "code": ErrorCode.VALIDATION_FAILED.name}
        held = self.held.get(sid)
        lang = held.lang if held is not None else "zh"
        for public_id in ids:
            await self.sio.leave_room(sid, task_room(public_id, lang))
        return {"ok": True}

    async def _subscribe_providers(self, sid: str, _: Any = None) -> dict[str, Any]:
        """Staff with ``catalog:read`` follow the provider views: the current ones in the
        acknowledgement, then ``provider.health`` whenever they change."""
        held, refusal = await self._recheck(sid)
        if held is None:
            return {"ok": False, "code": (refusal or ErrorCode.AUTH_REQUIRED).name, "providers": []}
        if not has_permission(held.role, Permission.CATALOG_READ):
            return {"ok": False, "code": ErrorCode.PERMISSION_DENIED.name, "providers": []}
        if second_factor_missing(held.role, held.mfa, self.settings, Permission.CATALOG_READ):
            return {"ok": False, "code": ErrorCode.TOTP_ENROLMENT_REQUIRED.name, "providers": []}
        return {"ok": True, "providers": await self.providers.follow(sid)}

    async def _unsubscribe_providers(self, sid: str, _: Any = None) -> dict[str, Any]:
        await self.providers.unfollow(sid)
        return {"ok": True}
