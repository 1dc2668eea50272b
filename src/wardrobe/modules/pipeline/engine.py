"""The pipeline engine: runs one task's steps on providers, durably.

A worker first *claims* the task (a lease in the tasks row, renewed by a heartbeat). Every step's
state is written before and after the provider call, so if the worker dies, another one that later
claims the expired lease skips finished steps and re-attaches to submitted vendor jobs by their
stored id instead of submitting again. The terminal state is written in one transaction with the
money: success confirms the quota hold, failure or cancel releases it — exactly once, because each
transition is a conditional update that only the lease holder can make.

This module holds the task's lease from its claim to its terminal transition (or its hand-back
when the worker stops); run.py walks the steps of one claimed run, provider_call.py makes the
calls of one step on one provider, and repository.py holds the queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from limits import RateLimitItem
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core import telemetry, tracing
from wardrobe.core.db import after_commit, unit_of_work
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import TASK_DURATION, TASK_QUEUE_WAIT, TASKS_FINISHED
from wardrobe.core.ratelimit import RateLimiter, parse_limits
from wardrobe.models import Task, TaskStatus
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.modules.moderation import Moderator
from wardrobe.modules.pipeline import repository
from wardrobe.modules.pipeline.config import EngineConfig
from wardrobe.modules.pipeline.definition import PipelineDef, StepDef
from wardrobe.modules.pipeline.run import Claimed, has_image_inputs, run_claimed
from wardrobe.modules.providers.accounts import Account, AccountDirectory
from wardrobe.modules.providers.base import ProviderRegistry
from wardrobe.modules.providers.callback_hints import CallbackHints
from wardrobe.modules.providers.health import CircuitBreaker
from wardrobe.modules.providers.slots import MemorySlots, SlotStore
from wardrobe.modules.storage.backend import ObjectStorage

log = get_logger("wardrobe.engine")
# The task whose trace is bound in this context (``PipelineEngine.traced``).
_traced_task: ContextVar[int | None] = ContextVar("traced_task", default=None)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def hold_ref(task: Task) -> str:
    return f"task:{task.public_id}"


def _observe_queue_wait(feature: str, created_at: datetime, claimed_at: datetime) -> None:
    TASK_QUEUE_WAIT.labels(feature).observe(max(0.0, (claimed_at - created_at).total_seconds()))


class _UserAtLimit(Exception):
    """The claimed task's owner already runs as many tasks as allowed: roll the claim back."""


class PipelineEngine:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        registry: ProviderRegistry,
        *,
        config: EngineConfig | None = None,
        worker_id: str | None = None,
        slots: SlotStore | None = None,
        breaker: CircuitBreaker | None = None,
        limiter: RateLimiter | None = None,
        requeue: Callable[[AsyncSession, int], None] | None = None,
        on_change: Callable[[int], None] | None = None,
        on_final: Callable[[AsyncSession, int], None] | None = None,
        disabled: Callable[[], Awaitable[frozenset[str]]] | None = None,
        moderator: Moderator | None = None,
        accounts: AccountDirectory | None = None,
        hints: CallbackHints | None = None,
        storage: ObjectStorage | None = None,
    ) -> None:
        self._sessions = session_factory
        # Content moderation: uploads at a task's start, stored outputs after each step. The
        # default checks text against the keyword list only.
        self.moderator = moderator or Moderator()
        # Providers an operator switched off: steps skip them for their next candidate.
        self.disabled = disabled
        self._registry = registry
        self.slots: SlotStore = slots or MemorySlots()
        self.limiter = limiter or RateLimiter.in_memory()
        # Writes a run message for a task into the given transaction (the runtime's outbox).
        self.requeue = requeue
        # Told (after commit) each time a task's visible state changed: status, a step, progress.
        self.on_change = on_change
        # Told (in the transaction) of a task's terminal state: the runtime makes that push durable.
        self.on_final = on_final
        self.breaker = breaker or CircuitBreaker()
        # Tasks this worker is running right now: a duplicate message for one of them is ignored.
        self._active: set[int] = set()
        self.config = config or EngineConfig()
        self.worker_id = worker_id or new_worker_id()
        self.rates: dict[str, list[RateLimitItem]] = {
            slug: parse_limits(spec) for slug, spec in self.config.provider_rates.items()
        }
        # Vendor accounts from the database; None = every provider on its settings.
        self.accounts = accounts
        # Callbacks wake the step they are about; None = polls only.
        self.hints = hints
        # Where steps store their objects: a task's intermediates go when it ends.
        self.storage = storage
        self._account_rates: dict[tuple[str, str], list[RateLimitItem]] = {}
        # Pipeline versions by id, parsed once per process (a version never changes).
        self._definitions: dict[int, PipelineDef] = {}

    # -- claiming and the lease ----------------------------------------------------------------

    async def claim(self, task_id: int) -> Claimed | None:
        """Take the task if nobody holds a live lease on it — or if this worker holds it but no run
        of it is active here any more (a run that crashed on a transient error). Exactly one wins.
        The winner reads the task, its pipeline and its persisted steps in the same transaction
        (nobody else can write them from there on), and on a first run starts the first step."""
        if task_id in self._active:
            return None
        now = utcnow()
        until = now + timedelta(seconds=self.config.lease_seconds)
        max_running = self.config.user_max_running
        try:
            async with unit_of_work(self._sessions) as session:
                if not await repository.take_lease(session, task_id, self.worker_id, now, until):
                    return None
                task = await repository.load_task(session, task_id)
                if task is None:
                    return None
                if max_running and not await repository.user_has_room(session, task_id, task.user_id, now, max_running):
                    raise _UserAtLimit(task.public_id)
                claimed = await self._load_claimed(session, task, now)
                if task.runs == 1:  # the first claim: observed once it commits
                    after_commit(
                        session, functools.partial(_observe_queue_wait, task.feature_key, task.created_at, now)
                    )
        except _UserAtLimit as deferred:
            # Rolled back: the task stays queued. Marked as waiting for a place, so that the user's
            # next task to finish sends it again (see _wake_next_of_user); the reaper is the safety net.
            async with unit_of_work(self._sessions) as session:
                await repository.mark_waiting_for_user_place(session, task_id)
            log.info("claim_deferred_user_limit", task_id=task_id, task=str(deferred))
            return None
        return claimed

    async def _load_claimed(self, session: AsyncSession, task: Task, now: datetime) -> Claimed | None:
        task_id = task.id
        definition = self._definitions.get(task.pipeline_schema_id)
        if definition is None:
            raw = await repository.pipeline_definition(session, task.pipeline_schema_id)
            if raw is None:
                return None
            # A pipeline version never changes once written (models/catalog.py): kept for good.
            definition = self._definitions[task.pipeline_schema_id] = PipelineDef.model_validate(raw)
        steps = await repository.load_steps(session, task_id)
        first = definition.steps[0]
        # The first step starts with the claim, unless image inputs are checked before any vendor call
        # (a failed check must leave every step pending) or the task is being canceled.
        if not steps and isinstance(first, StepDef) and not task.cancel_requested and not has_image_inputs(task):
            steps[first.id] = repository.new_step(task_id, first.id, now)
            await repository.write_step(session, steps[first.id], new=True, now=now)
        return Claimed(task, definition, steps)

    def rate_of(self, slug: str, account: Account | None) -> tuple[list[RateLimitItem], str]:
        """The rate windows a call counts against, and their key."""
        if account is None:
            return self.rates.get(slug, []), slug
        if not account.rate:
            return [], account.key
        parsed = self._account_rates.get((account.key, account.rate))
        if parsed is None:
            parsed = self._account_rates[(account.key, account.rate)] = parse_limits(account.rate)
        return parsed, account.key

    def announce(self, session: AsyncSession, task_id: int, *, final: bool = False) -> None:
        """Tell ``on_change`` about ``task_id`` once this session's transaction commits. A terminal
        state (``final``) goes to ``on_final`` instead, in the transaction, so that its push
        survives the process dying between the commit and the push."""
        if final and self.on_final is not None:
            self.on_final(session, task_id)
        elif self.on_change is not None:
            after_commit(session, functools.partial(self.on_change, task_id))

    @contextlib.asynccontextmanager
    async def traced(self, task: Task) -> AsyncIterator[None]:
        """Everything inside runs under the task's trace: its creating request's id as the
        ``request_id`` of every log line (libraries' too) and of its pushes, its public id as
        ``task``, and, with OpenTelemetry, a span in that request's trace. The id comes from the
        task row, so a run resumed by another worker after a crash carries the same one."""
        if _traced_task.get() == task.id:
            yield
            return
        marker = _traced_task.set(task.id)
        try:
            # A task from before trace ids were stored still gets one of its own, never "-".
            with (
                tracing.bound(task.trace_id or f"task-{task.public_id}", task=task.public_id),
                telemetry.span("wardrobe.task.run", task.trace_parent, **{"wardrobe.task": task.public_id}),
            ):
                yield
        finally:
            _traced_task.reset(marker)

    async def run(self, task_id: int) -> str | None:
        """Claim and run the task to a terminal state. Returns the final status, or None if the
        task was not ours to run (already claimed, finished, or the lease was lost midway). The
        run is traced from the task row its claim read (``traced``)."""
        claimed = await self.claim(task_id)
        if claimed is None:
            return None
        async with self.traced(claimed.task):
            if self.on_change is not None:
                self.on_change(task_id)  # the claim has committed: told under the task's trace
            return await self._run(claimed)

    async def _run(self, claimed: Claimed) -> str | None:
        task_id = claimed.task.id
        self._active.add(task_id)
        try:
            return await run_claimed(self, claimed)
        except asyncio.CancelledError:
            # This worker is shutting down mid-run: hand the task back now rather than leave it
            # until the lease runs out. Shielded, so a second cancellation cannot cut it short.
            await asyncio.shield(self._hand_back(task_id))
            raise
        finally:
            self._active.discard(task_id)

    async def _hand_back(self, task_id: int) -> None:
        """End our lease on a task we stop running, and send it again so that a live worker
        resumes it from its persisted steps (its provider slots were released on the way out)."""
        try:
            async with unit_of_work(self._sessions) as session:
                ended = await repository.end_lease(session, task_id, self.worker_id, utcnow())
                if ended and self.requeue is not None:
                    self.requeue(session, task_id)
            log.info("task_handed_back", task_id=task_id, worker=self.worker_id)
        except Exception:
            # The lease still expires on its own and the reaper re-queues the task.
            log.exception("task_hand_back_failed", task_id=task_id)

    # -- the end of a run ------------------------------------------------------------------------

    async def settle(
        self,
        task: Task,
        status: TaskStatus,
        *,
        outputs: list[dict[str, Any]] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> bool:
        """The terminal transition and the money, in one transaction, only by the lease holder:
        success confirms the task's quota hold, failure or cancel releases it. False when the task
        was no longer ours to end."""
        now = utcnow()
        values: dict[str, Any] = {
            "status": status.value,
            "lease_owner": None,
            "lease_expires_at": None,
            "finished_at": now,
            "updated_at": now,
        }
        if status is TaskStatus.SUCCEEDED:
            values.update(progress=100, outputs=outputs or [])
        else:
            values.update(error_code=error_code, error_message=error_message)
        async with unit_of_work(self._sessions) as session:
            if not await repository.finish_task(session, task.id, self.worker_id, values):
                return False
            ref = hold_ref(task)
            if status is TaskStatus.SUCCEEDED:
                await quota.confirm(session, ref)
            elif await quota.cancel(session, ref):
                await repository.mark_refunded(session, task.id)
            await self._wake_next_of_user(session, task.user_id)
            self.announce(session, task.id, final=True)
        # Committed: the task ended exactly once, here.
        TASKS_FINISHED.labels(task.feature_key, status.value).inc()
        TASK_DURATION.labels(task.feature_key).observe(max(0.0, (now - task.created_at).total_seconds()))
        return True

    async def _wake_next_of_user(self, session: AsyncSession, user_id: int) -> None:
        """A place just freed under the per-user limit: send the user's oldest task that a claim
        deferred for the limit (it is queued with no message left) again, in this transaction."""
        requeue = self.requeue
        if not self.config.user_max_running or requeue is None:
            return
        next_id = await repository.wake_next_waiting(session, user_id)
        if next_id is not None:
            requeue(session, next_id)

    @property
    def registry(self) -> ProviderRegistry:
        return self._registry

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions
