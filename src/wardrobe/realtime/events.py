"""Push events after commit: ``task.updated`` to the task's room, ``quota.updated`` to its user's room.

Whoever commits a change to a task (the API on create or cancel, the engine on claim, each step,
progress and the end) calls ``TaskEvents.changed(task_id)`` from an after-commit hook. The process
then loads the task's *current* state and emits it. Because what is sent is read after the commit,
a client always receives a state that was true, states of one task arrive in the order they were
committed, and the last one it receives is the latest: a task is never in two sends at once (a
change that comes while its task is being sent waits for that send to end, then is read afresh),
and changes to a task that are still waiting are coalesced into one send.

Sends run in up to ``lanes`` batches at once, each of up to ``batch`` waiting items read in one
query (and their steps in one more), so a burst of changes costs a few round trips per batch, not
per task, and one slow send does not hold up the others. A batch is taken as soon as a lane is
free: at a low rate each change goes out alone, at once; under load the changes that queued while
the lanes were busy go out together. ``quota.updated`` is read and sent by one lane at a time, so
the last balance a user hears is the latest one read.

A terminal state must reach the client even if the process that committed it dies before pushing:
that push is written to the outbox in the same transaction (``TaskRuntime.push_task_durably``) and
any process's relay sends it through ``deliver``, which waits until it has gone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.context import lang_var, request_id_var
from wardrobe.core.db import finish
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import PUSH_LAG
from wardrobe.models import QuotaAccount, TaskStatus
from wardrobe.modules.tasks.listing import read_for_push
from wardrobe.modules.tasks.presenter import TaskViews, public_error
from wardrobe.realtime.hub import plain, task_room, user_room

log = get_logger("wardrobe.realtime")
Emit = Callable[[str, dict[str, Any], str | list[str]], Awaitable[None]]
Item = int | tuple[str, int]  # a task id, or ("order", order id)
# What one send of an item came to: True sent, False nothing to send (the row is gone), or why it failed.
Outcome = bool | BaseException

LANES = 4  # batches in flight at once: each holds a database connection while it reads
BATCH = 32  # items per batch: one read for all, then one emit each


def event(kind: str, payload: Any, trace_id: str | None = None) -> dict[str, Any]:
    """A push; ``traceId`` is the trace of the change (a task's: the request that created it)."""
    return {"type": kind, "payload": plain(payload), "traceId": trace_id or request_id_var.get()}


def task_pushes(public_id: str, view: dict[str, Any]) -> list[tuple[str | list[str], dict[str, Any]]]:
    """Where a task's view goes, and as what. ``view`` was rendered in zh; only a failed task's
    error message differs in English, so every other push is one emit to both language rooms (one
    Redis message, as before) and a failure is two."""
    error = view.get("error")
    if error is None:
        return [([task_room(public_id), task_room(public_id, "en")], view)]
    english = {**view, "error": public_error(error["code"], "en")}
    return [(task_room(public_id), view), (task_room(public_id, "en"), english)]


def _quota(account: QuotaAccount) -> dict[str, int]:
    return {"balance": account.balance, "held": account.held, "available": account.balance - account.held}


class TaskEvents:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        views: TaskViews,
        emit: Emit,
        *,
        lanes: int = LANES,
        batch: int = BATCH,
    ) -> None:
        self._sessions = session_factory
        self._views = views
        self._emit = emit
        self._batch = batch
        # Items changed and not yet taken into a send, in the order they first changed (a dict is
        # an ordered set: announcing a waiting item again keeps its place, i.e. coalesces).
        self._waiting: dict[Item, None] = {}
        self._inflight: set[Item] = set()  # items in a send now: never taken into a second one
        # Callers of ``deliver`` waiting for the next send of an item.
        self._promised: dict[Item, list[asyncio.Future[None]]] = {}
        # When the oldest change still waiting for each item's next send committed (unix time):
        # the push lag is measured from it, so coalesced changes count from the first.
        self._since: dict[Item, float] = {}
        # The trace id of the latest change announced per item: sends run in a context of their
        # own, so the id travels with the item (a task's own trace id is preferred).
        self._traces: dict[Item, str] = {}
        self._lanes = asyncio.Semaphore(lanes)
        self._wake = asyncio.Event()  # something was announced, or a send ended
        self._idle = asyncio.Event()  # nothing waiting, nothing in flight
        self._idle.set()
        self._quota_turn = asyncio.Lock()
        self._dispatcher: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self.sent = 0

    def _note_trace(self, item: Item) -> None:
        trace_id = request_id_var.get()
        if trace_id != "-":
            self._traces[item] = trace_id

    def _want(self, item: Item, committed_at: float | None) -> None:
        self._note_trace(item)
        self._since.setdefault(item, time.time() if committed_at is None else committed_at)
        self._waiting[item] = None
        self._idle.clear()
        self._wake.set()

    def changed(self, task_id: int, committed_at: float | None = None) -> None:
        """Announce that ``task_id`` changed (call after its transaction committed; ``committed_at``
        when that was earlier than now, as unix time)."""
        self._want(task_id, committed_at)

    def order_changed(self, order_id: int, committed_at: float | None = None) -> None:
        """Announce that an order changed: ``order.updated`` (and ``quota.updated``) to its user."""
        self._want(("order", order_id), committed_at)

    async def deliver(self, item: Item, committed_at: float | None = None) -> None:
        """Push a task (its id) or an order (``("order", id)``) and wait until it went out; raises
        if the push failed (the outbox relay then keeps the message and tries again)."""
        promise: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._promised.setdefault(item, []).append(promise)
        self._want(item, committed_at)
        await promise

    def start(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="push-dispatch")

    async def stop(self, grace: float = 2.0) -> None:
        """Send what is waiting (within ``grace`` seconds), then stop."""
        if self._dispatcher is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        # The dispatcher only ever waits on our own event and semaphore: a cancellation lands there.
        self._dispatcher.cancel()
        await asyncio.wait([self._dispatcher], timeout=grace)
        self._dispatcher = None
        runs = set(self._runs)
        if runs:
            # A cancellation that lands inside a library call can be absorbed there (seen with a
            # push in flight): every wait is bounded, nothing waits on a send forever.
            _, pending = await asyncio.wait(runs, timeout=grace)
            for run in pending:
                run.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)
        for promises in self._promised.values():  # not sent here: their outbox messages stay
            for promise in promises:
                promise.cancel()
        self._promised.clear()

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ready():
                # The batch is taken once a lane is free, so it holds all that queued meanwhile.
                await self._lanes.acquire()
                batch = self._take()
                if not batch:
                    self._lanes.release()
                    break
                run = asyncio.create_task(self._run(batch))
                self._runs.add(run)
                run.add_done_callback(functools.partial(self._ran, batch))

    def _ready(self) -> bool:
        return any(item not in self._inflight for item in self._waiting)

    def _take(self) -> list[Item]:
        batch: list[Item] = []
        for item in self._waiting:
            if item not in self._inflight:
                batch.append(item)
                if len(batch) == self._batch:
                    break
        for item in batch:
            del self._waiting[item]
            self._inflight.add(item)
        return batch

    def _ran(self, batch: list[Item], run: asyncio.Task[None]) -> None:
        self._runs.discard(run)
        self._inflight.difference_update(batch)
        self._lanes.release()
        if self._waiting:
            self._wake.set()  # changes that came while their item was in this send
        elif not self._inflight:
            self._idle.set()

    async def _run(self, batch: list[Item]) -> None:
        # Everyone promised these items before now is served by this send: it reads the state
        # after their commits. Later callers wait for the next one.
        promised = {item: self._promised.pop(item, []) for item in batch}
        since = {item: self._since.pop(item, None) for item in batch}
        traces = {item: self._traces.pop(item, None) for item in batch}
        outcomes: dict[Item, Outcome] = {}
        try:
            tasks = [item for item in batch if isinstance(item, int)]
            if tasks:
                outcomes.update(await self._send_tasks(tasks, traces))
            for item in batch:
                if isinstance(item, tuple):
                    outcomes[item] = await self._send_order(item[1], traces[item])
        finally:
            now = time.time()
            for item in batch:
                outcome = outcomes.get(item)  # none when this send was cancelled (stop)
                started = since[item]
                if outcome is True and started is not None:
                    PUSH_LAG.observe(max(0.0, now - started))
                for promise in promised[item]:
                    if promise.done():
                        continue
                    if outcome is None:
                        promise.cancel()
                    elif isinstance(outcome, BaseException):
                        # A durable push is told, so its outbox message stays for another try.
                        promise.set_exception(outcome)
                    else:
                        promise.set_result(None)

    async def _send_tasks(self, task_ids: list[int], traces: dict[Item, str | None]) -> dict[Item, Outcome]:
        """One read for the batch, then each task's push. Most pushes are a courtesy (the database
        has the truth and clients re-read it on reconnect): one failure never stops the others."""
        outcomes: dict[Item, Outcome] = dict.fromkeys(task_ids, False)
        try:
            # Rendered in zh whatever request's context this send was started from; see task_pushes.
            reset = lang_var.set("zh")
            try:
                async with self._sessions() as session:
                    found = await read_for_push(session, self._views, task_ids)
                    await finish(session)
            finally:
                lang_var.reset(reset)
        except Exception as exc:
            log.exception("push_failed", items=len(task_ids))
            return dict.fromkeys(task_ids, exc)
        moved: dict[int, str | None] = {}  # users whose quota to push, with the trace to push it under
        for pushed, view in found:
            task = pushed.task
            # Every push of a task carries the trace id of the request that created it, whoever sends it.
            trace_id = pushed.trace_id or traces.get(task.id)
            try:
                for rooms, payload in task_pushes(task.public_id, view):
                    await self._emit("task.updated", event("task.updated", payload, trace_id), rooms)
            except Exception as exc:
                log.exception("push_failed", item=str(task.id))
                outcomes[task.id] = exc
                continue
            self.sent += 1
            outcomes[task.id] = True
            # The quota moved when the task was created (held) and when it ended (spent or given
            # back), never while it runs.
            if task.status != TaskStatus.RUNNING.value:
                moved[pushed.user_id] = trace_id
        if moved:
            failed = await self._send_quotas(moved)
            for pushed, _ in found:
                if pushed.user_id in failed and outcomes[pushed.task.id] is True:
                    outcomes[pushed.task.id] = failed[pushed.user_id]
        return outcomes

    async def _send_quotas(self, users: dict[int, str | None]) -> dict[int, BaseException]:
        """``quota.updated`` to each user's room; the users whose push failed, and why."""
        # One lane at a time reads and sends balances: read in one lane and sent after a newer one
        # read in another, a stale balance would be the last its user heard.
        async with self._quota_turn:
            try:
                async with self._sessions() as session:
                    rows = await session.scalars(select(QuotaAccount).where(QuotaAccount.user_id.in_(users)))
                    accounts = list(rows)
                    await finish(session)
            except Exception as exc:
                log.exception("push_failed", items=len(users))
                return dict.fromkeys(users, exc)
            failed: dict[int, BaseException] = {}
            for account in accounts:
                user_id = account.user_id
                try:
                    await self._emit(
                        "quota.updated", event("quota.updated", _quota(account), users[user_id]), user_room(user_id)
                    )
                except Exception as exc:
                    log.exception("push_failed", item=f"quota:{user_id}")
                    failed[user_id] = exc
            return failed

    async def _send_order(self, order_id: int, trace_id: str | None) -> Outcome:
        from wardrobe.models import Order
        from wardrobe.modules.payments.orders import order_body

        try:
            async with self._sessions() as session:
                order = await session.get(Order, order_id)
                await finish(session)
            if order is None:
                return False
            await self._emit(
                "order.updated", event("order.updated", order_body(order), trace_id), user_room(order.user_id)
            )
        except Exception as exc:
            log.exception("push_failed", item=f"order:{order_id}")
            return exc
        failed = await self._send_quotas({order.user_id: trace_id})
        return failed.get(order.user_id, True)


def server_emitter(sio: socketio.AsyncServer) -> Emit:
    async def emit(name: str, data: dict[str, Any], room: str | list[str]) -> None:
        await sio.emit(name, data, to=room)

    return emit


def manager_emitter(manager: socketio.AsyncManager) -> Emit:
    """For processes with no Socket.IO server (workers): publish through the shared manager."""

    async def emit(name: str, data: dict[str, Any], room: str | list[str]) -> None:
        await manager.emit(name, data, namespace="/", room=room)

    return emit
