"""Push events after commit: ``task.updated`` to the task's room, ``quota.updated`` to its user's room.

Whoever commits a change to a task (the API on create or cancel, the engine on claim, each step,
progress and the end) calls ``TaskEvents.changed(task_id)`` from an after-commit hook. One consumer
per process then loads the task's *current* state and emits it, one task at a time in the order
the changes came; changes to a task that are still waiting are coalesced. Because what is sent is
read after the commit, a client always receives a state that was true, states of one task arrive in
the order they were committed, and the last one it receives is the latest.

A terminal state must reach the client even if the process that committed it dies before pushing:
that push is written to the outbox in the same transaction (``TaskRuntime.push_task_durably``) and
any process's relay sends it through ``deliver``, which waits until it has gone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.context import request_id_var
from wardrobe.core.db import finish
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import PUSH_LAG
from wardrobe.models import QuotaAccount, Task, TaskStatus
from wardrobe.modules.tasks.presenter import TaskViews, present
from wardrobe.realtime.hub import plain, task_room, user_room

log = get_logger("wardrobe.realtime")
Emit = Callable[[str, dict[str, Any], str], Awaitable[None]]


def event(kind: str, payload: Any, trace_id: str | None = None) -> dict[str, Any]:
    """A push; ``traceId`` is the trace of the change (a task's: the request that created it)."""
    return {"type": kind, "payload": plain(payload), "traceId": trace_id or request_id_var.get()}


class TaskEvents:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], views: TaskViews, emit: Emit) -> None:
        self._sessions = session_factory
        self._views = views
        self._emit = emit
        # A task id, ("order", order id), or None to stop.
        self._queue: asyncio.Queue[int | tuple[str, int] | None] = asyncio.Queue()
        self._waiting: set[int | tuple[str, int]] = set()
        # Callers of ``deliver`` waiting for the next send of an item.
        self._promised: dict[int | tuple[str, int], list[asyncio.Future[None]]] = {}
        self._consumer: asyncio.Task[None] | None = None
        # When the oldest change still waiting for each item's next send committed (unix time):
        # the push lag is measured from it, so coalesced changes count from the first.
        self._since: dict[int | tuple[str, int], float] = {}
        # The trace id of the latest change announced per item: the consumer runs in a context of
        # its own, so the id travels with the item (a task's own trace id is preferred).
        self._traces: dict[int | tuple[str, int], str] = {}
        self.sent = 0

    def _note_trace(self, item: int | tuple[str, int]) -> None:
        trace_id = request_id_var.get()
        if trace_id != "-":
            self._traces[item] = trace_id

    def _want(self, item: int | tuple[str, int], committed_at: float | None) -> None:
        self._note_trace(item)
        self._since.setdefault(item, time.time() if committed_at is None else committed_at)
        if item not in self._waiting:
            self._waiting.add(item)
            self._queue.put_nowait(item)

    def changed(self, task_id: int, committed_at: float | None = None) -> None:
        """Announce that ``task_id`` changed (call after its transaction committed; ``committed_at``
        when that was earlier than now, as unix time)."""
        self._want(task_id, committed_at)

    def order_changed(self, order_id: int, committed_at: float | None = None) -> None:
        """Announce that an order changed: ``order.updated`` (and ``quota.updated``) to its user."""
        self._want(("order", order_id), committed_at)

    async def deliver(self, item: int | tuple[str, int], committed_at: float | None = None) -> None:
        """Push a task (its id) or an order (``("order", id)``) and wait until it went out; raises
        if the push failed (the outbox relay then keeps the message and tries again)."""
        promise: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._promised.setdefault(item, []).append(promise)
        self._want(item, committed_at)
        await promise

    def start(self) -> None:
        if self._consumer is None:
            self._consumer = asyncio.create_task(self._consume())

    async def stop(self, grace: float = 2.0) -> None:
        """Send what is waiting (within ``grace`` seconds), then stop."""
        if self._consumer is None:
            return
        with contextlib.suppress(TimeoutError):
            deadline = time.monotonic() + grace
            while self._waiting and time.monotonic() < deadline:
                await asyncio.wait_for(asyncio.shield(self._queue.join()), timeout=deadline - time.monotonic())
        # A sentinel rather than only cancel(): a cancellation that lands inside a library call can
        # be absorbed there (seen with a push in flight), leaving the loop waiting forever.
        self._queue.put_nowait(None)
        _, pending = await asyncio.wait([self._consumer], timeout=grace)
        if pending:
            self._consumer.cancel()
            await asyncio.wait([self._consumer], timeout=grace)
        self._consumer = None
        for promises in self._promised.values():  # not sent here: their outbox messages stay
            for promise in promises:
                promise.cancel()
        self._promised.clear()

    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            self._waiting.discard(item)
            trace_id = self._traces.pop(item, None)
            # Everyone promised this item before now is served by this send: it reads the state
            # after their commits. Later callers queue the item again.
            promised = self._promised.pop(item, [])
            since = self._since.pop(item, None)
            try:
                if isinstance(item, tuple):
                    emitted = await self._send_order(item[1], trace_id)
                else:
                    emitted = await self._send(item, trace_id)
                if emitted and since is not None:
                    PUSH_LAG.observe(max(0.0, time.time() - since))
            except Exception as exc:
                # Most pushes are a courtesy (the database has the truth and clients re-read it
                # on reconnect); never let one failure stop the next event. A durable push is
                # told, so its outbox message stays for another try.
                log.exception("push_failed", item=str(item))
                for promise in promised:
                    if not promise.done():
                        promise.set_exception(exc)
            else:
                for promise in promised:
                    if not promise.done():
                        promise.set_result(None)
            finally:
                self._queue.task_done()

    async def _send_order(self, order_id: int, trace_id: str | None) -> bool:
        from wardrobe.models import Order
        from wardrobe.modules.payments.orders import order_body

        async with self._sessions() as session:
            order = await session.get(Order, order_id)
            if order is None:
                return False
            account = await session.get(QuotaAccount, order.user_id)
            await finish(session)
        await self._emit("order.updated", event("order.updated", order_body(order), trace_id), user_room(order.user_id))
        if account is not None:
            quota = {"balance": account.balance, "held": account.held, "available": account.balance - account.held}
            await self._emit("quota.updated", event("quota.updated", quota, trace_id), user_room(order.user_id))
        return True

    async def _send(self, task_id: int, trace_id: str | None) -> bool:
        async with self._sessions() as session:
            task = await session.scalar(select(Task).where(Task.id == task_id))
            if task is None:
                return False
            [view] = await present(session, self._views, [task])
            # The quota moved when the task was created (held) and when it ended (spent or given
            # back), never while it runs.
            moved = task.status != TaskStatus.RUNNING.value
            account = await session.get(QuotaAccount, task.user_id) if moved else None
            await finish(session)
        # Every push of a task carries the trace id of the request that created it, whoever sends it.
        trace_id = task.trace_id or trace_id
        await self._emit("task.updated", event("task.updated", view, trace_id), task_room(task.public_id))
        self.sent += 1
        if account is not None:
            quota = {"balance": account.balance, "held": account.held, "available": account.balance - account.held}
            await self._emit("quota.updated", event("quota.updated", quota, trace_id), user_room(task.user_id))
        return True


def server_emitter(sio: socketio.AsyncServer) -> Emit:
    async def emit(name: str, data: dict[str, Any], room: str) -> None:
        await sio.emit(name, data, to=room)

    return emit


def manager_emitter(manager: socketio.AsyncManager) -> Emit:
    """For processes with no Socket.IO server (workers): publish through the shared manager."""

    async def emit(name: str, data: dict[str, Any], room: str) -> None:
        await manager.emit(name, data, namespace="/", room=room)

    return emit
