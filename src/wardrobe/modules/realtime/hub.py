"""Live progress over Socket.IO (G1-G4): python-socketio mounted at ``/socket.io`` beside the API.

A client connects with ``auth: {token: <access_token>}``; the token is checked like any request's
(signature and expiry, then the login session and the account through ``check_session``), and the
socket joins its user's room. ``subscribe`` ``{task_ids: [...]}`` joins the rooms of the caller's own
tasks and acknowledges with their current state, so a client that reconnects starts from the truth;
ids that are not the caller's are listed as refused and never joined.

Events are ``{type, payload, traceId}``. Who emits them: ``TaskEvents`` (events.py), after commit,
in whichever process changed the task. Across processes they travel through Redis
(``AsyncRedisManager``): an API process relays to its own sockets what any process published. With
no Redis (embedded mode) the manager is in-process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import socketio
from sqlalchemy import select

from wardrobe.core.db import finish
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.infra import Infra
from wardrobe.core.logging import get_logger
from wardrobe.models import Task
from wardrobe.modules.auth.deps import verified_user
from wardrobe.modules.realtime.nodes import name_sessions
from wardrobe.modules.tasks.presenter import present
from wardrobe.settings import Settings

log = get_logger("wardrobe.realtime")
MAX_SUBSCRIBE = 50  # task ids per subscribe call


def plain(value: Any) -> Any:
    """JSON types only (datetimes as ISO 8601): what Socket.IO and the Redis channel carry."""
    return orjson.loads(orjson.dumps(value))


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def task_room(public_id: str) -> str:
    return f"task:{public_id}"


def channel(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}:socketio"


def client_manager(settings: Settings, *, write_only: bool = False) -> socketio.AsyncManager:
    """Redis pub/sub between processes when Redis is configured; in process otherwise."""
    if settings.redis_url:
        return socketio.AsyncRedisManager(settings.redis_url, channel=channel(settings), write_only=write_only)
    return socketio.AsyncManager()


class RealtimeHub:
    """The Socket.IO server of an API process and its handlers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.infra: Infra | None = None  # set in the app's lifespan, before any connection is served
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=client_manager(settings),
            cors_allowed_origins=list(settings.cors_origins) if settings.cors_origins else [],
            logger=False,
            engineio_logger=False,
        )
        name_sessions(self.sio, settings.socketio_node)  # session ids name their process (nodes.py)
        self.sio.on("connect", self._connect)
        self.sio.on("subscribe", self._subscribe)
        self.sio.on("unsubscribe", self._unsubscribe)

    def asgi_app(self) -> socketio.ASGIApp:
        return socketio.ASGIApp(self.sio, socketio_path="socket.io")

    def _infra(self) -> Infra:
        if self.infra is None:
            raise ConnectionRefusedError("starting")
        return self.infra

    async def _connect(self, sid: str, environ: Mapping[str, Any], auth: Any) -> None:
        infra = self._infra()
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError(ErrorCode.AUTH_REQUIRED.name)
        try:
            claims = infra.tokens.decode_access(token)
            async with infra.session_factory() as session:
                await verified_user(session, claims)
        except AppError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.code.name) from None
        await self.sio.save_session(sid, {"user_id": claims.user_id, "session_id": claims.session_id})
        await self.sio.enter_room(sid, user_room(claims.user_id))

    @staticmethod
    def _task_ids(data: Any) -> list[str] | None:
        ids = data.get("task_ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > MAX_SUBSCRIBE:
            return None
        if not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
            return None
        return list(dict.fromkeys(ids))

    async def _subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        ids = self._task_ids(data)
        if ids is None:
            return {"ok": False, "code": ErrorCode.VALIDATION_FAILED.name, "tasks": [], "refused": []}
        infra = self._infra()
        user_id = int((await self.sio.get_session(sid))["user_id"])
        owned_ids = Task.user_id == user_id, Task.public_id.in_(ids)
        async with infra.session_factory() as session:
            owned = set(await session.scalars(select(Task.public_id).where(*owned_ids)))
            await finish(session)
        # Rooms first, snapshot second: a change committed in between reaches the client as an
        # event (after the ack, or before it and again in it). Read the other way round, a task
        # ending between the read and the join would look unfinished to the client forever.
        for public_id in owned:
            await self.sio.enter_room(sid, task_room(public_id))
        async with infra.session_factory() as session:
            tasks = list(await session.scalars(select(Task).where(*owned_ids)))
            views = await present(session, infra, tasks)
            await finish(session)
        # Another user's task and a task that does not exist look the same: refused.
        return {"ok": True, "tasks": plain(views), "refused": [i for i in ids if i not in owned]}

    async def _unsubscribe(self, sid: str, data: Any) -> dict[str, Any]:
        ids = self._task_ids(data)
        if ids is None:
            return {"ok": False, "code": ErrorCode.VALIDATION_FAILED.name}
        for public_id in ids:
            await self.sio.leave_room(sid, task_room(public_id))
        return {"ok": True}
