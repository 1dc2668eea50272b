"""``provider.health`` for the operators' console: the provider views of
``GET /api/v1/admin/providers`` (switch, slots in use, health, accounts), pushed while staff follow them.

Cheap by construction. Each API process reads the views only while one of *its own* sockets follows
them (``subscribe_providers``), at most once every ``WARDROBE_SOCKET_PROVIDER_PUSH_SECONDS``, and
pushes them only to its own followers (``ignore_queue``: nothing crosses Redis) and only when they
differ from what it pushed last. Health is what every worker's breaker published to Redis and a
switch is a database row, so every process reads the same truth; no process has to tell another.
With no follower, nothing runs. A follower gets the views in its acknowledgement, then every change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import socketio

from wardrobe.core.context import request_id_var
from wardrobe.core.logging import get_logger

log = get_logger("wardrobe.realtime")
PROVIDERS_ROOM = "providers"
PROVIDER_HEALTH = "provider.health"
ReadViews = Callable[[], Awaitable[list[dict[str, Any]]]]


def _json(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


class ProviderFeed:
    """The followers of the provider views on this process, and the loop that serves them."""

    def __init__(self, sio: socketio.AsyncServer, interval: float) -> None:
        self._sio = sio
        self._interval = interval
        self._read: ReadViews | None = None
        self._followers: set[str] = set()
        self._loop: asyncio.Task[None] | None = None
        self._last: bytes | None = None

    def attach(self, read: ReadViews) -> None:
        self._read = read

    @property
    def followers(self) -> int:
        return len(self._followers)

    async def follow(self, sid: str) -> list[dict[str, Any]]:
        """Add a follower; the views now, for its acknowledgement. Joined before the read, so a
        change after the read reaches it as an event."""
        if self._read is None:
            raise RuntimeError("the provider feed has no reader yet")
        await self._sio.enter_room(sid, PROVIDERS_ROOM)
        self._followers.add(sid)
        views: list[dict[str, Any]] = _json(await self._read())
        if self._loop is None or self._loop.done():
            self._last = orjson.dumps(views)
            self._loop = asyncio.create_task(self._serve(), name="provider-feed")
        return views

    async def unfollow(self, sid: str) -> None:
        if sid in self._followers:
            self._followers.discard(sid)
            with contextlib.suppress(Exception):  # the socket may be gone already
                await self._sio.leave_room(sid, PROVIDERS_ROOM)

    def forget(self, sid: str) -> None:
        """A follower disconnected (Socket.IO drops its rooms itself)."""
        self._followers.discard(sid)

    async def _serve(self) -> None:
        while self._followers:
            await asyncio.sleep(self._interval)
            if not self._followers or self._read is None:
                break
            try:
                await self._push_if_changed(self._read)
            except Exception as exc:
                # A database or Redis hiccup costs one beat, never the feed.
                log.warning("provider_feed_failed", error_type=type(exc).__name__)
        self._last = None

    async def _push_if_changed(self, read: ReadViews) -> None:
        views = _json(await read())
        body = orjson.dumps(views)
        if body == self._last:
            return
        self._last = body
        message = {"type": PROVIDER_HEALTH, "payload": views, "traceId": request_id_var.get()}
        await self._sio.emit(PROVIDER_HEALTH, message, to=PROVIDERS_ROOM, ignore_queue=True)

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
