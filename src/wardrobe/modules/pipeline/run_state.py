"""What one claimed run of a task shares between its order of steps (run.py), its provider calls
(provider_call.py) and its content checks (screening.py): the task, its persisted steps, the
provider slots it holds, and the two things that stop it early — a cancel, a lost lease.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
        self.steps = steps
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
    ) -> None:
        """Persist a step's state, only while this run still holds the task's lease."""
        now = utcnow()
        async with unit_of_work(self.engine.sessions) as session:
            await self._assert_lease(session)
            self.steps[step_id] = await repository.save_step(
                session,
                self.task.id,
                step_id,
                status,
                now,
                provider=provider,
                attempt=attempt,
                vendor_task_id=vendor_task_id,
                account=account.name if account is not None else None,
                outputs=outputs,
                error=error,
                finished=finished,
            )
            self.engine.announce(session, self.task.id)

    async def _assert_lease(self, session: AsyncSession) -> None:
        if await repository.lease_owner(session, self.task.id) != self.engine.worker_id:
            self.lost.set()
            raise LeaseLost
