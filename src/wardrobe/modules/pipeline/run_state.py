"""What one claimed run of a task shares between its order of steps (run.py), its provider calls
(provider_call.py) and its content checks (screening.py): the task, its persisted steps, the
provider slots it holds, and the two things that stop it early — a cancel, a lost lease.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from limits import RateLimitItem
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.models import StepStatus, Task, TaskStatus, TaskStep
from wardrobe.models.base import utcnow
from wardrobe.modules.moderation import Moderator
from wardrobe.modules.pipeline import repository
from wardrobe.modules.pipeline.config import EngineConfig
from wardrobe.modules.pipeline.held_slots import HeldSlots
from wardrobe.modules.providers.accounts import Account, AccountDirectory
from wardrobe.modules.providers.base import ProviderError, ProviderRegistry
from wardrobe.modules.providers.callback_hints import CallbackHints
from wardrobe.modules.providers.health import CircuitBreaker
from wardrobe.modules.providers.slots import SlotStore
from wardrobe.modules.storage.backend import ObjectStorage


class StepFailed(Exception):
    def __init__(self, step_id: str, code: str) -> None:
        super().__init__(f"{step_id}: {code}")
        self.step_id = step_id
        self.code = code


class TaskCanceled(Exception):
    pass


class LeaseLost(Exception):
    pass


class EngineParts(Protocol):
    """What a run reads of its engine (``PipelineEngine``). A run reads each part when it uses it
    rather than keeping a copy, so a part replaced on the engine counts from the next use on."""

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def registry(self) -> ProviderRegistry: ...
    @property
    def config(self) -> EngineConfig: ...
    @property
    def worker_id(self) -> str: ...
    @property
    def slots(self) -> SlotStore: ...
    @property
    def breaker(self) -> CircuitBreaker: ...
    @property
    def limiter(self) -> RateLimiter: ...
    @property
    def disabled(self) -> Callable[[], Awaitable[frozenset[str]]] | None: ...
    @property
    def accounts(self) -> AccountDirectory | None: ...
    @property
    def hints(self) -> CallbackHints | None: ...
    @property
    def storage(self) -> ObjectStorage | None: ...
    @property
    def moderator(self) -> Moderator: ...

    def rate_of(self, slug: str, account: Account | None) -> tuple[list[RateLimitItem], str]: ...

    def announce(self, session: AsyncSession, task_id: int, *, final: bool = False) -> None: ...

    async def settle(
        self,
        task: Task,
        status: TaskStatus,
        *,
        outputs: list[dict[str, Any]] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> bool: ...


class RunState:
    """One claimed execution of one task, as its parts see it."""

    def __init__(self, engine: EngineParts, task: Task, steps: dict[str, TaskStep]) -> None:
        self.engine = engine
        self.task = task
        # Every step's state as persisted, and as this run changes it: the run writes what it
        # holds here and reads nothing back.
        self.steps = steps
        # The steps that have a row in the database (the others are INSERTed by their first write).
        self.persisted = set(steps)
        self.cancel = asyncio.Event()
        self.lost = asyncio.Event()
        # Provider slots held now: renewed by the heartbeat, so they end soon after this run does.
        self.held = HeldSlots(engine.slots, engine.config.lease_seconds)

    # -- interruptions -------------------------------------------------------------------------

    def check_interrupts(self) -> None:
        if self.lost.is_set():
            raise LeaseLost
        if self.cancel.is_set():
            raise TaskCanceled

    async def bounded(self, call: Any, seconds: float) -> Any:
        """Run a provider call under the step timeout, abandoning it on cancel or lost lease."""
        work = asyncio.ensure_future(call)
        stop = asyncio.ensure_future(self._interrupted())
        try:
            done, _ = await asyncio.wait({work, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if work in done:
            return work.result()
        work.cancel()
        self.check_interrupts()
        raise ProviderError("timeout", retryable=True)

    async def _interrupted(self) -> None:
        cancel = asyncio.ensure_future(self.cancel.wait())
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({cancel, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
            lost.cancel()

    async def sleep_interruptibly(self, seconds: float, hint: asyncio.Event | None = None) -> None:
        """Sleep ``seconds``; stop early on cancel or a lost lease (raised), or on ``hint`` (a
        callback for the step arrived: poll now)."""
        if hint is None:
            try:
                await asyncio.wait_for(self._interrupted(), timeout=seconds)
            except TimeoutError:
                return
            self.check_interrupts()
            return
        stop = asyncio.ensure_future(self._interrupted())
        woke = asyncio.ensure_future(hint.wait())
        try:
            await asyncio.wait({stop, woke}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            woke.cancel()
        hint.clear()
        self.check_interrupts()

    # -- the step rows ---------------------------------------------------------------------------

    def record(
        self,
        step_id: str,
        status: StepStatus,
        now: datetime,
        *,
        provider: str | None = None,
        attempt: int | None = None,
        vendor_task_id: str | None = None,
        account: Account | None = None,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
        finished: bool = False,
    ) -> TaskStep:
        """Change a step's state in this run's memory (written by the next ``save_step``).
        ``provider`` also records the account (None: the provider's settings); ``attempt`` counts
        one more attempt."""
        row = self.steps.get(step_id)
        if row is None:
            row = self.steps[step_id] = repository.new_step(self.task.id, step_id, now)
        row.status = status.value
        if provider is not None:
            if row.provider != provider:
                row.vendor_task_id = None
            row.provider = provider
            row.account = account.name if account is not None else None
        if attempt is not None:
            row.attempts = (row.attempts or 0) + 1
        if vendor_task_id is not None:
            row.vendor_task_id = vendor_task_id
        if outputs is not None:
            row.outputs = outputs
        if error is not None:
            row.error = error[:500]
        if finished:
            row.finished_at = now
        return row

    async def save_step(
        self,
        step_id: str,
        status: StepStatus,
        *,
        provider: str | None = None,
        attempt: int | None = None,
        vendor_task_id: str | None = None,
        account: Account | None = None,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
        finished: bool = False,
        progress: int | None = None,
        then: str | None = None,
    ) -> None:
        """Persist a step's state, only while this run still holds the task's lease, in one
        transaction with the task's ``progress`` and the start of the step that runs next
        (``then``, when it has no row yet): one commit per step on a straight pipeline."""
        now = utcnow()
        row = self.record(
            step_id,
            status,
            now,
            provider=provider,
            attempt=attempt,
            vendor_task_id=vendor_task_id,
            account=account,
            outputs=outputs,
            error=error,
            finished=finished,
        )
        rows = [row]
        if then is not None and then not in self.steps and not self.cancel.is_set():
            rows.append(self.record(then, StepStatus.RUNNING, now))
        async with unit_of_work(self.engine.sessions) as session:
            if not await repository.hold_task(session, self.task.id, self.engine.worker_id, now, progress):
                self.lost.set()
                raise LeaseLost
            for each in rows:
                await repository.write_step(session, each, new=each.step_id not in self.persisted, now=now)
            self.engine.announce(session, self.task.id)
        self.persisted.update(each.step_id for each in rows)

    def calls_made(self) -> bool:
        """Whether any step of this task has reached a provider (or ended) in some run."""
        return any(
            row.status != StepStatus.RUNNING.value or row.attempts or row.vendor_task_id for row in self.steps.values()
        )
