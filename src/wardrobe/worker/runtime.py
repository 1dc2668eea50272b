"""The task runtime of a process: taskiq broker, the engine behind it, the relay and the reaper.

Embedded mode uses taskiq's in-memory broker, so the API process is also the worker. Production
uses the Redis stream broker (acknowledged deliveries): API processes only publish; ``wardrobe
worker`` processes consume. The database stays the source of truth either way: a lost message is
re-sent by the reaper, a duplicate one loses the claim race and does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from taskiq import AsyncBroker, InMemoryBroker
from taskiq_redis import RedisStreamBroker

from wardrobe.core import telemetry, tracing
from wardrobe.core.db import unit_of_work
from wardrobe.core.logging import get_logger
from wardrobe.core.outbox import TOPIC_PUSH, TOPIC_RUN, TOPIC_TASK_CHANGED, Announcer, add_message
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.models import OutboxMessage, Task, TaskStatus
from wardrobe.models.base import utcnow
from wardrobe.modules.moderation import Moderator
from wardrobe.modules.pipeline.config import EngineConfig
from wardrobe.modules.pipeline.engine import PipelineEngine
from wardrobe.modules.providers.accounts import AccountDirectory
from wardrobe.modules.providers.base import ProviderRegistry
from wardrobe.modules.providers.callback_hints import CallbackHints
from wardrobe.modules.providers.health import CircuitBreaker
from wardrobe.modules.providers.slots import SlotStore
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.webhooks.sender import WebhookSender
from wardrobe.settings import Settings
from wardrobe.worker.outbox import OutboxRelay

if TYPE_CHECKING:
    from wardrobe.realtime.events import TaskEvents

log = get_logger("wardrobe.worker")
RUN_TASK = "wardrobe.run_task"
RUN_ATTEMPTS = 3


class TaskRuntime:
    def __init__(
        self,
        settings: Settings,
        session_factory: Any,
        registry: ProviderRegistry,
        *,
        consume: bool,
        slots: SlotStore | None = None,
        redis: Redis | None = None,
        limiter: RateLimiter | None = None,
        dedicated: bool = False,
        disabled: Callable[[], Awaitable[frozenset[str]]] | None = None,
        announcer: Announcer | None = None,
        events: TaskEvents | None = None,
        publishers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] | None = None,
        storage: ObjectStorage | None = None,
        accounts: AccountDirectory | None = None,
        moderator: Moderator | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.settings = settings
        # Sends webhook deliveries where tasks run (modules/webhooks); any relay records them.
        self.webhooks = webhooks
        self._sessions = session_factory
        self.consume = consume
        self.engine = PipelineEngine(
            session_factory,
            registry,
            config=EngineConfig(
                lease_seconds=settings.task_lease_seconds,
                heartbeat_seconds=settings.task_heartbeat_seconds,
                provider_concurrency=dict(settings.provider_concurrency),
                provider_rates=dict(settings.provider_rate_limits),
                user_max_running=settings.user_max_running_tasks,
            ),
            slots=slots,
            breaker=CircuitBreaker(on_change=self._health_changed),
            limiter=limiter,
            requeue=self._requeue,
            on_change=self.task_changed,
            on_final=self.push_task_durably,
            disabled=disabled,
            moderator=moderator,
            accounts=accounts,
            # Vendor callbacks wake the step they are about, in whichever process polls it.
            hints=CallbackHints(redis, f"{settings.redis_key_prefix}:callback_hints"),
            storage=storage,
        )
        # Push events (realtime/): given to the processes that can deliver them.
        self.events = events
        # Outbox topics this process can publish besides running and pushing tasks (topic →
        # publisher), e.g. revoked sessions whose sockets every API process must drop.
        self.publishers = dict(publishers or {})
        self._redis = redis
        self.dedicated = dedicated
        self.broker = self._build_broker(settings)
        runtime = self

        async def run_task(task_id: int) -> None:
            await runtime._run_task(task_id)

        self.broker.register_task(run_task, task_name=RUN_TASK)
        self.relay = OutboxRelay(session_factory, self._publish, topics=(TOPIC_RUN,))
        self._relaying = False  # whether this process's relay runs (set by start)
        # How modules' notices reach this process's clients (core/outbox.py).
        self.announcer = announcer or Announcer()
        self.announcer.route(
            relayed=lambda topic: self._relaying and topic in self.relay.topics,
            listeners={TOPIC_PUSH: self._push_here, TOPIC_TASK_CHANGED: lambda p: self.task_changed(int(p["task_id"]))},
        )
        self._background: list[asyncio.Task[None]] = []
        self._pending_writes: set[asyncio.Task[Any]] = set()
        self._runs: set[asyncio.Task[Any]] = set()  # runs in progress in this process
        self._started = False
        self._stopping = False
        # Runs this process finished, and a condition to wait on them (tests, graceful shutdown).
        self.finished: dict[int, str | None] = {}
        self._changed = asyncio.Condition()

    def _build_broker(self, settings: Settings) -> AsyncBroker:
        # The Redis stream carries work between processes: API processes that do not run tasks
        # publish to it and `wardrobe worker` processes consume it. A process that runs the tasks
        # it creates (embedded mode, or an API told to work in-process) dispatches in memory; the
        # database, not the broker, is what makes a task durable (leases + reaper).
        broker: AsyncBroker
        if not settings.redis_url or (self.consume and not self.dedicated):
            broker = InMemoryBroker(max_async_tasks=settings.worker_concurrency)
        else:
            broker = self._stream_broker(settings)
        # With OpenTelemetry on, taskiq's own middleware carries the trace in the message's labels.
        broker.add_middlewares(*telemetry.queue_middlewares())
        return broker

    @staticmethod
    def _stream_broker(settings: Settings) -> AsyncBroker:
        return RedisStreamBroker(
            settings.redis_url,
            queue_name=f"{settings.redis_key_prefix}:tasks",
            consumer_group_name=f"{settings.redis_key_prefix}:workers",
            consumer_id="0",  # a new group reads what was sent before it existed
            idle_timeout=int(settings.task_lease_seconds * 2000),
            unacknowledged_lock_timeout=settings.task_lease_seconds,
            # One message per read: a busy worker leaves the rest in the stream for idle ones
            # instead of hoarding a batch it cannot start yet.
            xread_count=1,
        )

    @property
    def hints(self) -> CallbackHints:
        hints = self.engine.hints
        if hints is None:  # pragma: no cover - set in __init__
            raise RuntimeError("callback hints not set")
        return hints

    def task_changed(self, task_id: int) -> None:
        """A committed change to a task: tell connected clients (if this process pushes events)."""
        if self.events is not None:
            self.events.changed(task_id)

    def push_task_durably(self, session: AsyncSession, task_id: int) -> None:
        """A task reached its terminal state in this transaction: its push goes through the outbox,
        so that if this process dies between the commit and the push (a host lost mid-run), any
        other process's relay still sends it. Clients waiting for the end must hear it."""
        self.announcer.durable(session, TOPIC_PUSH, {"task_id": task_id})

    def push_order_durably(self, session: AsyncSession, order_id: int) -> None:
        """An order changed in this transaction (paid, fulfilled, refunded): pushed like a task's end."""
        self.announcer.durable(session, TOPIC_PUSH, {"order_id": order_id})

    def _push_here(self, payload: dict[str, Any]) -> None:
        """A durable push delivered by this process itself (it runs no relay for pushes)."""
        if self.events is None:
            return
        if "task_id" in payload:
            self.events.changed(int(payload["task_id"]))
        else:
            self.events.order_changed(int(payload["order_id"]))

    def _requeue(self, session: AsyncSession, task_id: int) -> None:
        add_message(session, TOPIC_RUN, {"task_id": task_id}, self.relay.kick)

    @property
    def health_key(self) -> str:
        return f"{self.settings.redis_key_prefix}:provider_health"

    def _health_changed(self, provider: str, snapshot: dict[str, Any]) -> None:
        """Publish a provider's new health so every API process can show it to operators (read back
        by providers/health.py ``ProviderHealth``)."""
        log.warning("provider_health_changed", provider=provider, state=snapshot["state"])
        if self._redis is not None:
            payload = json.dumps({**snapshot, "worker": self.engine.worker_id})
            task = asyncio.ensure_future(self._redis.hset(self.health_key, provider, payload))
            self._pending_writes.add(task)
            task.add_done_callback(self._pending_writes.discard)

    async def _run_task(self, task_id: int) -> None:
        outcome: str | None = None
        current = asyncio.current_task()
        if current is not None:
            self._runs.add(current)
        try:
            # Each run binds the task's trace (its creating request's id) from the row its claim
            # reads (PipelineEngine.run): no read of its own here.
            outcome = await self._run_attempts(task_id, current)
        finally:
            self._runs.discard(current)
            async with self._changed:
                if outcome is not None or task_id not in self.finished:
                    self.finished[task_id] = outcome
                self._changed.notify_all()

    async def _run_attempts(self, task_id: int, current: asyncio.Task[Any] | None) -> str | None:
        try:
            for attempt in range(1, RUN_ATTEMPTS + 1):
                try:
                    return await self.engine.run(task_id)
                except Exception:
                    # A transient failure (a dropped connection, a deadlock victim): the steps done so
                    # far are persisted, so run again from there, soon. After the last attempt the
                    # lease expires and the reaper hands the task to whichever worker is free.
                    log.exception("task_run_crashed", task_id=task_id, attempt=attempt)
                    await asyncio.sleep(0.5 * attempt)
        except asyncio.CancelledError:
            if not self._stopping or current is None:
                raise
            # Our own stop interrupted the run, which handed its task back on the way out: the
            # expected end of a run at shutdown, so it ends normally here. Raised, it would reach
            # taskiq, which logs any exception of a task as an error with its traceback.
            current.uncancel()
            log.info("task_run_interrupted", task_id=task_id)
        return None

    async def wait_finished(self, task_id: int, within: float = 30.0) -> str | None:
        """Wait until this process has run ``task_id`` to a terminal state; returns that state."""

        async def reached() -> str | None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.finished.get(task_id) is not None)
                return self.finished[task_id]

        return await asyncio.wait_for(reached(), within)

    async def _publish(self, topic: str, payload: dict[str, Any], written_at: datetime | None = None) -> None:
        if self._stopping:
            # A stopping runtime must not take messages it can no longer deliver: failing here rolls
            # the relay's batch back, leaving the rows for a live relay.
            raise RuntimeError("task runtime is stopping")
        if topic == TOPIC_RUN:
            task = self.broker.find_task(RUN_TASK)
            if task is None:
                raise RuntimeError("run task not registered")
            # Bounded: the relay holds its batch's row locks while publishing.
            await asyncio.wait_for(task.kiq(int(payload["task_id"])), timeout=10)
        elif topic == TOPIC_PUSH:
            if self.events is None:
                raise RuntimeError("this process cannot push")  # not reached: see start()
            item: int | tuple[str, int] = (
                int(payload["task_id"]) if "task_id" in payload else ("order", int(payload["order_id"]))
            )
            # Through the process's one push queue, so the states of a task stay in commit order.
            committed = written_at.timestamp() if written_at is not None else None
            await asyncio.wait_for(self.events.deliver(item, committed), timeout=10)
        elif topic in self.publishers:
            await asyncio.wait_for(self.publishers[topic](payload), timeout=10)
        else:
            raise RuntimeError(f"no publisher for {topic}")  # not reached: the relay's topics

    async def start(self) -> None:
        if self.events is not None:
            self.events.start()
        in_memory = isinstance(self.broker, InMemoryBroker)
        # Durable pushes are relayed only by processes that can push.
        topics = [*self.publishers, *([TOPIC_PUSH] if self.events is not None else [])]
        if in_memory and not self.consume:
            # Embedded and told not to run tasks: nobody could receive a message, so none is sent
            # and tasks stay queued (operations and tests use this to look at the queue). Other
            # topics still go out.
            self._start_relay(topics)
            return
        self.broker.is_worker_process = self.consume
        await self.broker.startup()
        self._start_relay([TOPIC_RUN, *topics])
        if self.consume:
            self._background.append(asyncio.create_task(self._reap_forever()))
            if self.webhooks is not None:
                self._background.append(asyncio.create_task(self.webhooks.run_forever()))
            await self.hints.start()
            if not in_memory:
                from taskiq.api import run_receiver_task

                self._background.append(
                    asyncio.create_task(
                        run_receiver_task(self.broker, max_async_tasks=self.settings.worker_concurrency)
                    )
                )
        self._started = True

    def _start_relay(self, topics: list[str]) -> None:
        if not topics:
            return
        self.relay.topics = tuple(topics)
        self._background.append(asyncio.create_task(self.relay.run_forever()))
        self._relaying = True

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: take no more work, give the runs in progress ``grace`` seconds
        (WARDROBE_SHUTDOWN_GRACE_SECONDS) to finish, then interrupt them. An interrupted run
        releases its provider slots and hands its task back (lease ended, message re-sent), so a
        live worker resumes it from its persisted steps at once."""
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        self._stopping = True
        self._relaying = False
        self.relay.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        # Stop receiving first (the relay, the reaper and the stream reader), then drain.
        for job in self._background:
            job.cancel()
        if self._background:
            # Bounded: a library loop that ignores cancellation must not hold up shutdown.
            _, stuck = await asyncio.wait(self._background, timeout=grace)
            for job in stuck:
                log.warning("background_job_did_not_stop", job=job.get_name())
        self._background.clear()
        runs = set(self._runs)
        if runs:
            log.info("waiting_for_runs", count=len(runs), grace_seconds=grace)
            _, pending = await asyncio.wait(runs, timeout=grace)
            for run in pending:
                run.cancel()
            if pending:
                await asyncio.wait(pending, timeout=max(grace, 5.0))
        if self._started:
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(self.broker.shutdown(), timeout=max(grace, 1.0))
            self._started = False
        await self.hints.stop()
        if self.events is not None:
            await self.events.stop(min(grace, 2.0))

    async def reap_once(self) -> int:
        """Re-queue tasks nobody is running: a running task whose lease expired (its worker died),
        or a queued one that has waited too long without a pending message (a message was lost)."""
        now = utcnow()
        stale_queue = now - timedelta(seconds=self.settings.task_requeue_after_seconds)
        pending_message = exists().where(
            OutboxMessage.topic == TOPIC_RUN,
            OutboxMessage.published_at.is_(None),
        )
        async with unit_of_work(self._sessions) as session:
            rows = list(
                await session.execute(
                    select(Task.id, Task.trace_id, Task.trace_parent)
                    .where(
                        or_(
                            and_(Task.status == TaskStatus.RUNNING.value, Task.lease_expires_at < now),
                            and_(Task.status == TaskStatus.QUEUED.value, Task.updated_at < stale_queue),
                        )
                    )
                    .order_by(Task.id)
                    .limit(200)
                )
            )
            ids = [row[0] for row in rows]
            if not ids or await session.scalar(select(pending_message)):
                return 0
            for task_id, trace_id, trace_parent in rows:
                # The message carries the task's trace, like the one its creating request wrote.
                session.add(
                    OutboxMessage(
                        topic=TOPIC_RUN, payload={"task_id": task_id}, trace_id=trace_id, trace_parent=trace_parent
                    )
                )
            await session.execute(update(Task).where(Task.id.in_(ids)).values(updated_at=now))
        self.relay.kick()
        log.info("tasks_requeued", count=len(ids))
        return len(ids)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.task_reap_interval_seconds)
            # Each pass under an id of its own, like a scheduler job's run.
            with tracing.bound(tracing.job_trace_id("reaper")):
                try:
                    await self.reap_once()
                except Exception:
                    log.exception("reaper_failed")
