"""The pipeline engine (D4): runs one task's steps on providers, durably.

A worker first *claims* the task (a lease in the tasks row, renewed by a heartbeat). Every step's
state is written before and after the provider call, so if the worker dies, another one that later
claims the expired lease skips finished steps and re-attaches to submitted vendor jobs by their
stored id instead of submitting again. The terminal state is written in one transaction with the
money: success confirms the quota hold, failure or cancel releases it — exactly once, because each
transition is a conditional update that only the lease holder can make.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from limits import RateLimitItem
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import after_commit, unit_of_work
from wardrobe.core.logging import get_logger
from wardrobe.core.ratelimit import RateLimiter, parse_limits
from wardrobe.models import PipelineSchema, StepStatus, Task, TaskStatus, TaskStep, User
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.modules.moderation import Moderator, Purpose
from wardrobe.modules.moderation.gates import image_keys, screen_images
from wardrobe.modules.pipeline.definition import ForkDef, PipelineDef, StepDef, parse_ref
from wardrobe.modules.pipeline.held_slots import HeldSlots, runs_in_process
from wardrobe.modules.providers.accounts import Account, AccountDirectory
from wardrobe.modules.providers.base import (
    AsyncProvider,
    CancellableProvider,
    JobState,
    ProviderError,
    ProviderRegistry,
    StepContext,
    SyncProvider,
)
from wardrobe.modules.providers.callback_hints import CallbackHints
from wardrobe.modules.providers.callbacks import step_ref
from wardrobe.modules.providers.health import CircuitBreaker
from wardrobe.modules.providers.slots import MemorySlots, SlotStore, wait_for_account_slot, wait_for_slot
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.storage.gc import object_keys_in
from wardrobe.modules.storage.keys import RESULTS, TMP
from wardrobe.modules.storage.verification import still_verified, verified

log = get_logger("wardrobe.engine")


def new_worker_id() -> str:
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# lease_owner of a queued task whose claim was deferred by the per-user limit (no lease: claimable).
WAITING_FOR_USER_PLACE = "waiting:user-limit"
INPUT_CHANGED = "input_changed"  # an upload replaced after it was verified (E2)


def hold_ref(task: Task) -> str:
    return f"task:{task.public_id}"


class StepFailed(Exception):
    def __init__(self, step_id: str, code: str) -> None:
        super().__init__(f"{step_id}: {code}")
        self.step_id = step_id
        self.code = code


class _UserAtLimit(Exception):
    """The claimed task's owner already runs as many tasks as allowed: roll the claim back."""


class TaskCanceled(Exception):
    pass


class LeaseLost(Exception):
    pass


@dataclass(frozen=True, slots=True)
class EngineConfig:
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    max_backoff_seconds: float = 30.0
    # Provider slug -> calls in flight allowed across every worker (D5); absent = unlimited.
    provider_concurrency: Mapping[str, int] = field(default_factory=dict)
    # Provider slug -> request rate windows ("5/second;300/minute"), across every worker (D5).
    provider_rates: Mapping[str, str] = field(default_factory=dict)
    # Tasks of one user running at once (D5); a claim beyond it leaves the task queued. 0 = no limit.
    user_max_running: int = 0


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
    ) -> None:
        self._sessions = session_factory
        # Content moderation (issue 6.6): uploads at a task's start, stored outputs after each
        # step. The default checks text against the keyword list only; the app replaces it.
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
        # Vendor accounts from the database (set by the app); None = every provider on its settings.
        self.accounts: AccountDirectory | None = None
        # Callbacks wake the step they are about (set by the runtime); None = polls only.
        self.hints: CallbackHints | None = None
        # Where steps store their objects (set by the app): a task's intermediates go when it ends.
        self.storage: ObjectStorage | None = None
        self._account_rates: dict[tuple[str, str], list[RateLimitItem]] = {}

    # -- claiming and the lease ----------------------------------------------------------------

    async def claim(self, task_id: int) -> bool:
        """Take the task if nobody holds a live lease on it — or if this worker holds it but no run
        of it is active here any more (a run that crashed on a transient error). Exactly one wins."""
        if task_id in self._active:
            return False
        now = utcnow()
        try:
            async with unit_of_work(self._sessions) as session:
                result = await session.execute(
                    update(Task)
                    .where(
                        Task.id == task_id,
                        Task.status.in_([TaskStatus.QUEUED.value, TaskStatus.RUNNING.value]),
                        (Task.lease_expires_at.is_(None))
                        | (Task.lease_expires_at < now)
                        | (Task.lease_owner == self.worker_id),
                    )
                    .values(
                        status=TaskStatus.RUNNING.value,
                        lease_owner=self.worker_id,
                        lease_expires_at=now + timedelta(seconds=self.config.lease_seconds),
                        runs=Task.runs + 1,
                        updated_at=now,
                    )
                )
                won = bool(result.rowcount == 1)  # type: ignore[attr-defined]
                if won and self.config.user_max_running and not await self._user_has_room(session, task_id, now):
                    raise _UserAtLimit
                if won:
                    await session.execute(
                        update(Task).where(Task.id == task_id, Task.started_at.is_(None)).values(started_at=now)
                    )
                    self.announce(session, task_id)
        except _UserAtLimit:
            # Rolled back: the task stays queued. Marked as waiting for a place, so that the user's
            # next task to finish sends it again (see _wake_next_of_user); the reaper is the safety net.
            async with unit_of_work(self._sessions) as session:
                await session.execute(
                    update(Task)
                    .where(Task.id == task_id, Task.status == TaskStatus.QUEUED.value, Task.lease_owner.is_(None))
                    .values(lease_owner=WAITING_FOR_USER_PLACE)
                )
            log.info("claim_deferred_user_limit", task_id=task_id)
            return False
        return won

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

    async def _user_has_room(self, session: AsyncSession, task_id: int, now: datetime) -> bool:
        """Whether the owner of ``task_id`` (just claimed in this transaction) stays within the
        per-user limit. Claims of one user's tasks are serialised on the user's row (FOR UPDATE on
        MariaDB/PostgreSQL; SQLite's single writer lock is already held by the claim), and the count
        runs after the lock, so two workers can never both take the last place."""
        user_id = await session.scalar(select(Task.user_id).where(Task.id == task_id))
        await session.execute(select(User.id).where(User.id == user_id).with_for_update())
        running = await session.scalar(
            select(func.count())
            .select_from(Task)
            .where(
                Task.user_id == user_id,
                Task.status == TaskStatus.RUNNING.value,
                Task.lease_expires_at > now,
                Task.id != task_id,
            )
        )
        return int(running or 0) < self.config.user_max_running

    async def run(self, task_id: int) -> str | None:
        """Claim and run the task to a terminal state. Returns the final status, or None if the
        task was not ours to run (already claimed, finished, or the lease was lost midway)."""
        if not await self.claim(task_id):
            return None
        self._active.add(task_id)
        try:
            return await _Run(self, task_id).execute()
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
                result = await session.execute(
                    update(Task)
                    .where(
                        Task.id == task_id,
                        Task.lease_owner == self.worker_id,
                        Task.status == TaskStatus.RUNNING.value,
                    )
                    .values(lease_expires_at=utcnow())
                )
                if result.rowcount == 1 and self.requeue is not None:  # type: ignore[attr-defined]
                    self.requeue(session, task_id)
            log.info("task_handed_back", task_id=task_id, worker=self.worker_id)
        except Exception:
            # The lease still expires on its own and the reaper re-queues the task.
            log.exception("task_hand_back_failed", task_id=task_id)

    @property
    def registry(self) -> ProviderRegistry:
        return self._registry

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions


class _Run:
    """One claimed execution of one task."""

    def __init__(self, engine: PipelineEngine, task_id: int) -> None:
        self.engine = engine
        self.task_id = task_id
        self.cancel = asyncio.Event()
        self.lost = asyncio.Event()
        self._task: Task | None = None
        self.steps: dict[str, TaskStep] = {}
        self.done_steps = 0
        self.total_steps = 1
        # Provider slots held now: renewed by the heartbeat, so they end soon after this run does.
        self.held = HeldSlots(engine.slots, engine.config.lease_seconds)

    @property
    def task(self) -> Task:
        if self._task is None:
            raise RuntimeError("the task is loaded at the start of execute()")
        return self._task

    # -- the run ---------------------------------------------------------------------------------

    async def execute(self) -> str | None:
        engine = self.engine
        async with engine.sessions() as session:
            task = await session.get(Task, self.task_id)
            schema = await session.get(PipelineSchema, task.pipeline_schema_id) if task else None
            rows = await session.scalars(select(TaskStep).where(TaskStep.task_id == self.task_id))
            self.steps = {r.step_id: r for r in rows}
        if task is None or schema is None:
            return None
        self._task = task
        definition = PipelineDef.model_validate(schema.definition)
        self.total_steps = max(1, definition.step_count())
        self.done_steps = sum(1 for r in self.steps.values() if r.status == StepStatus.SUCCEEDED.value)
        if task.cancel_requested:
            return await self._finish(TaskStatus.CANCELED, error_code="canceled")
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            uploads = image_keys(task.inputs, bare_prefixes=("uploads/",))
            await self._check_uploads_unchanged(uploads)
            if not self.steps:  # moderation: uploads, once, before the first vendor call
                await self._screen_images("inputs", uploads, Purpose.INPUT_IMAGE)
            outputs = await self._run_units(definition)
            final_outputs = self._collect_outputs(definition, outputs)
            return await self._finish(TaskStatus.SUCCEEDED, outputs=final_outputs)
        except StepFailed as exc:
            log.info("task_failed", task=task.public_id, step=exc.step_id, error_code=exc.code)
            return await self._finish(
                TaskStatus.FAILED, error_code=exc.code, error_message=f"step {exc.step_id} failed"
            )
        except TaskCanceled:
            return await self._finish(TaskStatus.CANCELED, error_code="canceled")
        except LeaseLost:
            log.warning("lease_lost", task=task.public_id, worker=engine.worker_id)
            return None
        finally:
            heartbeat.cancel()
            # wait(), not `await heartbeat` under suppress(CancelledError): that would also swallow
            # a cancellation of this run itself (a worker shutting down) arriving meanwhile.
            await asyncio.wait([heartbeat])

    async def _heartbeat(self) -> None:
        cfg = self.engine.config
        while True:
            await asyncio.sleep(cfg.heartbeat_seconds)
            now = utcnow()
            async with unit_of_work(self.engine.sessions) as session:
                renewed = await session.execute(
                    update(Task)
                    .where(
                        Task.id == self.task_id,
                        Task.lease_owner == self.engine.worker_id,
                        Task.status == TaskStatus.RUNNING.value,
                    )
                    .values(lease_expires_at=now + timedelta(seconds=cfg.lease_seconds))
                )
                flag = await session.scalar(select(Task.cancel_requested).where(Task.id == self.task_id))
            if renewed.rowcount != 1:  # type: ignore[attr-defined]
                self.lost.set()
                return
            await self.held.renew()
            if flag:
                self.cancel.set()

    async def _run_units(self, definition: PipelineDef) -> dict[str, dict[str, Any]]:
        outputs: dict[str, dict[str, Any]] = {
            sid: dict(row.outputs or {}) for sid, row in self.steps.items() if row.status == StepStatus.SUCCEEDED.value
        }
        for unit in definition.steps:
            self._check_interrupts()
            if isinstance(unit, ForkDef):
                await self._run_fork(unit, outputs)
            else:
                outputs[unit.id] = await self._run_step(unit, outputs)
        return outputs

    async def _run_fork(self, fork: ForkDef, outputs: dict[str, dict[str, Any]]) -> None:
        limit = asyncio.Semaphore(fork.max_parallel)

        async def branch(steps: list[StepDef]) -> None:
            async with limit:
                for step in steps:
                    self._check_interrupts()
                    outputs[step.id] = await self._run_step(step, outputs)

        # A TaskGroup cancels the sibling branches as soon as one fails: the pipeline stops at once.
        try:
            async with asyncio.TaskGroup() as group:
                for steps in fork.branches:
                    group.create_task(branch(steps))
        except* (StepFailed, TaskCanceled, LeaseLost) as grouped:
            raise grouped.exceptions[0] from None

    def _check_interrupts(self) -> None:
        if self.lost.is_set():
            raise LeaseLost
        if self.cancel.is_set():
            raise TaskCanceled

    # -- one step ------------------------------------------------------------------------------

    def _resolve(self, step: StepDef, outputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for name, value in step.inputs.items():
            ref = parse_ref(value)
            if ref is None:
                resolved[name] = value
            elif ref[0] == "inputs":
                resolved[name] = self.task.inputs.get(ref[1])
            else:
                resolved[name] = outputs.get(ref[1], {}).get(ref[2] or "")
        return resolved

    async def _run_step(self, step: StepDef, outputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        row = self.steps.get(step.id)
        if row is not None and row.status == StepStatus.SUCCEEDED.value:
            return dict(row.outputs or {})
        if row is not None and row.status in (StepStatus.FAILED.value, StepStatus.SKIPPED.value):
            if step.on_failure == "continue":
                return {}
            raise StepFailed(step.id, row.error or "step_failed")
        inputs = self._resolve(step, outputs)
        last_code = "no_provider"
        switched_off = await self.engine.disabled() if self.engine.disabled is not None else frozenset()
        for slug in step.provider_candidates:
            provider = self.engine.registry.get(slug)
            if provider is None:
                continue
            if slug in switched_off:
                last_code = "provider_disabled"
                continue  # an operator took it out of service: straight to the next candidate
            if not self.engine.breaker.allow(slug):
                last_code = "provider_down"
                continue  # circuit open: straight to the next candidate
            try:
                result = await self._with_slot(step, slug, provider, inputs)
            except ProviderError as exc:
                last_code = exc.code
                log.info("provider_failed", step=step.id, provider=slug, error_code=exc.code)
                continue  # fall back to the next candidate
            await self._screen_outputs(step, result)  # moderation: before the outputs count
            await self._save_step(step.id, StepStatus.SUCCEEDED, outputs=result, finished=True)
            self.done_steps += 1
            await self._save_progress()
            return result
        await self._save_step(step.id, StepStatus.FAILED, error=last_code, finished=True)
        if step.on_failure == "continue":
            return {}
        raise StepFailed(step.id, last_code)

    # -- content moderation (issue 6.6; policy in wardrobe.modules.moderation.moderator) ---------

    async def _screen_images(self, step_id: str, keys: list[str], purpose: Purpose) -> None:
        code = await screen_images(
            self.engine.moderator,
            keys,
            user_id=self.task.user_id,
            purpose=purpose,
            task_id=self.task.public_id,
            sleep=self._sleep_interruptibly,
        )
        if code is not None:
            raise StepFailed(step_id, code)  # the task fails and is refunded once by _finish

    async def _check_uploads_unchanged(self, keys: list[str]) -> None:
        """The task was created against verified uploads, but the engine and the vendors read them
        now: one replaced since it was verified (keys that may still write under the user's
        prefix, E2) fails the task, refunded, instead of reaching a vendor unchecked. A missing
        object or record is left to the step that reads it (``bad_input``)."""
        storage = self.engine.storage
        if storage is None or not keys:
            return
        async with self.engine.sessions() as session:
            records = await verified(session, self.task.user_id, keys)
        for key, record in records.items():
            info = await storage.head(key)
            if info is not None and not still_verified(record, info):
                log.warning("input_changed_since_verified", task=self.task.public_id)
                raise StepFailed("inputs", INPUT_CHANGED)

    async def _screen_outputs(self, step: StepDef, result: dict[str, Any]) -> None:
        """A step's stored images are checked before the step counts as done; blocked (or
        uncheckable) ones are deleted and the step fails, so they are never exposed."""
        keys = image_keys(result)
        try:
            await self._screen_images(step.id, keys, Purpose.OUTPUT_IMAGE)
        except StepFailed as exc:
            storage = self.engine.moderator.storage
            ours = [key for key in keys if key.startswith(("results/", "tmp/"))]  # never an upload
            if storage is not None and ours:
                await storage.delete_many(ours)
            await self._save_step(step.id, StepStatus.FAILED, error=exc.code, finished=True)
            raise

    async def _with_slot(self, step: StepDef, slug: str, provider: object, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run the step's calls holding one of the provider's slots, if it has a limit (D5) — on
        one of its accounts when operators configured accounts for it (accounts.py)."""
        directory = self.engine.accounts
        row = self.steps.get(step.id)
        # A vendor job created with the credentials from settings (no account recorded) is known to
        # the vendor only under them: a run resuming it keeps to them even if accounts were added
        # for the provider meanwhile. Only new work goes to the accounts.
        on_settings = row is not None and row.provider == slug and bool(row.vendor_task_id) and not row.account
        if directory is not None and not on_settings and await directory.configured(slug):
            return await self._on_an_account(step, slug, provider, inputs, directory)
        limit = self.engine.config.provider_concurrency.get(slug)
        if not limit:
            return await self._call_with_retries(step, provider, inputs, None)
        holder = self._slot_holder(step, slug)
        lease = self.held.lease_seconds
        if not await wait_for_slot(self.engine.slots, slug, holder, limit, lease, within=step.timeout_seconds):
            raise ProviderError("provider_busy", retryable=True)
        self.held.took(step.id, slug, holder)
        try:
            return await self._call_with_retries(step, provider, inputs, None)
        finally:
            await self.held.release(step.id)

    async def _on_an_account(
        self, step: StepDef, slug: str, provider: object, inputs: dict[str, Any], directory: AccountDirectory
    ) -> dict[str, Any]:
        holder = self._slot_holder(step, slug)
        broken: set[str] = set()
        while True:
            row = self.steps.get(step.id)  # read each time: a submit in this loop pins the job too
            pinned = row.account if row is not None and row.provider == slug and row.vendor_task_id else None
            if pinned:
                # The vendor job exists on this account: only it can poll or cancel the job.
                account = await directory.get(slug, pinned)
                if account is None:
                    raise ProviderError("account_gone", f"{slug} account {pinned!r} was removed", retryable=False)
                candidates = [account]
            else:
                # Accounts whose circuit is open (a bad key, no funds) are skipped; others work on.
                candidates = [
                    a for a in await directory.usable(slug) if a.name not in broken and self.engine.breaker.allow(a.key)
                ]
                if not candidates:
                    raise ProviderError("provider_down", f"no usable {slug} account")
                random.shuffle(candidates)  # accounts with equal room share the load
            name = await wait_for_account_slot(
                self.engine.slots,
                slug,
                holder,
                [(a.name, a.concurrency) for a in candidates],
                self.held.lease_seconds,
                within=step.timeout_seconds,
            )
            if name is None:
                raise ProviderError("provider_busy", retryable=True)
            self.held.took(step.id, slug, holder, name)
            try:
                account = next(a for a in candidates if a.name == name)
                return await self._call_with_retries(step, provider, inputs, account)
            except ProviderError as exc:
                if not exc.broken or pinned:
                    raise
                # This account cannot work (its breaker counted it): the step tries another one.
                log.warning("provider_account_broken", provider=slug, account=name, error_code=exc.code)
                broken.add(name)
            finally:
                await self.held.release(step.id)

    def _slot_holder(self, step: StepDef, slug: str) -> str:
        """Who holds the step's slot (held_slots.py says for how long)."""
        if step.type == "sync_api" or not isinstance(self.engine.registry.get(slug), AsyncProvider):
            # A synchronous call cannot be re-attached: a run that resumes this step after a lost
            # lease makes a call of its own while the lost run's may still be in flight at the
            # vendor. Each run therefore holds its own slot, and a lost run's slot stays taken
            # while its call may still run there (until that call's deadline): after a crash the
            # provider briefly has a slot less, never a call more than its limit.
            return f"{self.task.public_id}:{step.id}:run{self.task.runs}"
        # An async job lives at the vendor; a resumed run re-attaches to it by its stored id
        # and takes over the same slot.
        return f"{self.task.public_id}:{step.id}"

    async def _call_with_retries(
        self, step: StepDef, provider: object, inputs: dict[str, Any], account: Account | None
    ) -> dict[str, Any]:
        attempts = step.retries + 1
        for attempt in range(1, attempts + 1):
            self._check_interrupts()
            ctx = StepContext(self.task.public_id, self.task.user_id, step.id, attempt, account=account)
            slug = str(getattr(provider, "slug", "?"))
            # Health is per account when there are accounts: one bad key does not take the rest down.
            health = account.key if account is not None else slug
            if not await self._await_rate(slug, step.timeout_seconds, account):
                # Our own limit, not the provider's failure: no breaker record; the next candidate.
                raise ProviderError("provider_busy", retryable=True)
            started = time.monotonic()
            try:
                result = await self._call_once(step, provider, inputs, ctx)
            except ProviderError as exc:
                # Retryable failures (5xx, timeouts, refused) and a broken account say the provider
                # is unwell; a permanent "bad input" answer says it is working.
                self.engine.breaker.record(health, not (exc.retryable or exc.broken), time.monotonic() - started)
                if not exc.retryable or attempt == attempts:
                    raise
                # Exponential back-off with full jitter, so retries from many tasks spread out.
                delay = min(self.engine.config.max_backoff_seconds, step.backoff_seconds * 2 ** (attempt - 1))
                await self._sleep_interruptibly(random.uniform(0, delay))  # noqa: S311 - jitter, not security
                continue
            self.engine.breaker.record(health, True, time.monotonic() - started)
            return result
        raise ProviderError("unreachable")  # pragma: no cover

    async def _call_once(
        self, step: StepDef, provider: object, inputs: dict[str, Any], ctx: StepContext
    ) -> dict[str, Any]:
        slug = getattr(provider, "slug", "?")
        row = self.steps.get(step.id)
        if step.type == "sync_api" or not isinstance(provider, AsyncProvider):
            # An async step may fall back to a provider that answers in the call (a vendor job on
            # RunningHub, the local CPU provider when its circuit is open).
            if not isinstance(provider, SyncProvider):
                raise ProviderError("provider_mismatch")
            await self._save_step(step.id, StepStatus.RUNNING, provider=slug, attempt=ctx.attempt, account=ctx.account)
            await self._call_out(step, provider, step.timeout_seconds)
            try:
                result: dict[str, Any] = await self._bounded(
                    provider.run(step.action, inputs, ctx), step.timeout_seconds
                )
            except ProviderError:
                self.held.call_over(step.id)  # the vendor answered with an error, or the call's time is up
                raise
            self.held.call_over(step.id)
            return result
        if not isinstance(provider, AsyncProvider):
            raise ProviderError("provider_mismatch")
        job_id = row.vendor_task_id if row is not None and row.provider == slug else None
        # The step's time counts from its first start (persisted), however often it is resumed.
        started = (row.started_at if row is not None and row.started_at else None) or utcnow()
        deadline = started + timedelta(seconds=step.timeout_seconds)
        if job_id is None:
            await self._save_step(step.id, StepStatus.RUNNING, provider=slug, attempt=ctx.attempt, account=ctx.account)
            # From its submit the job may run at the vendor until its deadline, whether we live or not.
            await self._call_out(step, provider, (deadline - utcnow()).total_seconds())
            try:
                job_id = await self._bounded(provider.submit(step.action, inputs, ctx), step.timeout_seconds)
            except ProviderError:
                self.held.call_over(step.id)  # refused, or its time is up: no job of ours runs there
                raise
            # Persisted before anything else happens: from here on a restart re-attaches (on the
            # same account: the job is the account's).
            await self._save_step(
                step.id, StepStatus.RUNNING, provider=slug, vendor_task_id=job_id, account=ctx.account
            )
        else:
            await self._call_out(step, provider, (deadline - utcnow()).total_seconds())
        stored = self.steps.get(step.id)
        if stored is not None:
            # Polls name the job's outputs by what is persisted (first start, attempts so far), so a
            # resumed run stores them under the same keys as the run that submitted.
            ctx = dataclasses.replace(ctx, attempt=stored.attempts or ctx.attempt, started_at=stored.started_at)
        try:
            return await self._poll_until_done(step, provider, slug, job_id, ctx, deadline)
        except TaskCanceled:
            if await self._cancel_at_vendor(provider, job_id, ctx):
                self.held.call_over(step.id)
            raise

    async def _call_out(self, step: StepDef, provider: object, seconds: float) -> None:
        """A call that may run for ``seconds`` leaves: at an external vendor it keeps the step's slot
        that long whatever happens to this run; an in-process provider's work ends with the process."""
        if not runs_in_process(provider):
            await self.held.call_out(step.id, seconds)

    async def _cancel_at_vendor(self, provider: object, job_id: str, ctx: StepContext) -> bool:
        """Best effort, bounded: the task is canceled (and refunded) whatever the vendor says.
        True when the vendor took the cancel (the job no longer runs there)."""
        if not isinstance(provider, CancellableProvider):
            return False
        try:
            await asyncio.wait_for(provider.cancel(job_id, ctx), timeout=10)
        except Exception as exc:  # a vendor that cannot cancel must not block the cancel
            log.warning("vendor_cancel_failed", job=job_id, error=type(exc).__name__)
            return False
        return True

    async def _poll_until_done(
        self, step: StepDef, provider: AsyncProvider, slug: str, job_id: str, ctx: StepContext, deadline: datetime
    ) -> dict[str, Any]:
        hints = self.engine.hints
        # Registered before the first poll: a callback that lands while a poll is in flight still
        # cuts the next sleep short.
        watching = hints.watch(step_ref(self.task.public_id, step.id)) if hints is not None else None
        with watching if watching is not None else contextlib.nullcontext() as woke:
            while True:
                self._check_interrupts()
                remaining = (deadline - utcnow()).total_seconds()
                if remaining <= 0:
                    raise ProviderError("timeout", retryable=False)
                if not await self._await_rate(slug, remaining, ctx.account):
                    continue  # the deadline check above ends it
                status = await self._bounded(provider.poll(job_id, ctx), remaining)
                if status.state is not JobState.RUNNING:
                    self.held.call_over(step.id)  # the job is over at the vendor
                if status.state is JobState.SUCCEEDED:
                    return dict(status.outputs)
                if status.state is JobState.FAILED:
                    raise ProviderError(status.error_code or "vendor_failed", retryable=False)
                await self._sleep_interruptibly(min(step.poll_interval_seconds, remaining), woke)

    async def _await_rate(self, slug: str, within: float, account: Account | None) -> bool:
        """Take one request from the provider's (or its account's) rate windows (shared by every
        worker through Redis), waiting up to ``within`` seconds for room; False if none came in
        time (D5)."""
        items, key = self.engine.rate_of(slug, account)
        if not items:
            return True
        deadline = time.monotonic() + within
        while True:
            wait = await self.engine.limiter.try_hit(items, "provider", key)
            if not wait:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Up to 20 % later than the window frees, so waiting workers do not all retry at once.
            await self._sleep_interruptibly(min(wait * random.uniform(1.0, 1.2), remaining))  # noqa: S311

    async def _bounded(self, call: Any, seconds: float) -> Any:
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
        self._check_interrupts()
        raise ProviderError("timeout", retryable=True)

    async def _interrupted(self) -> None:
        cancel = asyncio.ensure_future(self.cancel.wait())
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({cancel, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
            lost.cancel()

    async def _sleep_interruptibly(self, seconds: float, hint: asyncio.Event | None = None) -> None:
        """Sleep ``seconds``; stop early on cancel or a lost lease (raised), or on ``hint`` (a
        callback for the step arrived: poll now)."""
        if hint is None:
            try:
                await asyncio.wait_for(self._interrupted(), timeout=seconds)
            except TimeoutError:
                return
            self._check_interrupts()
            return
        stop = asyncio.ensure_future(self._interrupted())
        woke = asyncio.ensure_future(hint.wait())
        try:
            await asyncio.wait({stop, woke}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            woke.cancel()
        hint.clear()
        self._check_interrupts()

    # -- persistence -----------------------------------------------------------------------------

    async def _save_step(
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
        now = utcnow()
        async with unit_of_work(self.engine.sessions) as session:
            await self._assert_lease(session)
            row = await session.scalar(
                select(TaskStep).where(TaskStep.task_id == self.task_id, TaskStep.step_id == step_id)
            )
            if row is None:
                row = TaskStep(task_id=self.task_id, step_id=step_id, started_at=now, attempts=0, outputs={})
                session.add(row)
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
            await session.flush()
            self.steps[step_id] = row
            self.engine.announce(session, self.task_id)

    async def _assert_lease(self, session: AsyncSession) -> None:
        owner = await session.scalar(select(Task.lease_owner).where(Task.id == self.task_id))
        if owner != self.engine.worker_id:
            self.lost.set()
            raise LeaseLost

    async def _save_progress(self) -> None:
        progress = min(99, int(100 * self.done_steps / self.total_steps))
        async with unit_of_work(self.engine.sessions) as session:
            await session.execute(
                update(Task)
                .where(
                    Task.id == self.task_id,
                    Task.lease_owner == self.engine.worker_id,
                    Task.progress < progress,
                )
                .values(progress=progress, updated_at=utcnow())
            )
            self.engine.announce(session, self.task_id)

    async def _wake_next_of_user(self, session: AsyncSession) -> None:
        """A place just freed under the per-user limit: send the user's oldest task that a claim
        deferred for the limit (it is queued with no message left) again, in this transaction."""
        requeue = self.engine.requeue
        if not self.engine.config.user_max_running or requeue is None:
            return
        next_id = await session.scalar(
            select(Task.id)
            .where(
                Task.user_id == self.task.user_id,
                Task.status == TaskStatus.QUEUED.value,
                Task.lease_owner == WAITING_FOR_USER_PLACE,
            )
            .order_by(Task.id)
            .limit(1)
        )
        if next_id is not None:
            await session.execute(update(Task).where(Task.id == next_id).values(lease_owner=None))
            requeue(session, next_id)

    def _collect_outputs(
        self, definition: PipelineDef, outputs: Mapping[str, Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        collected = []
        for name, ref_text in definition.outputs.items():
            ref = parse_ref(ref_text)
            value = outputs.get(ref[1], {}).get(ref[2] or "") if ref else None
            if isinstance(value, dict) and "object_key" in value:
                collected.append({"name": name, **value})
            elif value is not None:
                collected.append({"name": name, "value": value})
        return collected

    async def _finish(
        self,
        status: TaskStatus,
        *,
        outputs: list[dict[str, Any]] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> str | None:
        """The terminal transition and the money, in one transaction, only by the lease holder."""
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
        async with unit_of_work(self.engine.sessions) as session:
            result = await session.execute(
                update(Task)
                .where(
                    Task.id == self.task_id,
                    Task.status == TaskStatus.RUNNING.value,
                    Task.lease_owner == self.engine.worker_id,
                )
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            ref = hold_ref(self.task)
            if status is TaskStatus.SUCCEEDED:
                await quota.confirm(session, ref)
            elif await quota.cancel(session, ref):
                await session.execute(update(Task).where(Task.id == self.task_id).values(refunded=True))
            await self._wake_next_of_user(session)
            self.engine.announce(session, self.task_id, final=True)
        log.info("task_finished", task=self.task.public_id, status=status.value)
        await self._drop_intermediates(outputs or [])
        return status.value

    async def _drop_intermediates(self, kept: list[dict[str, Any]]) -> None:
        """The task ended: what its steps stored and its outputs do not name (a first step's image
        a second step consumed, everything of a failed task) is deleted now (E5), not left to the
        orphan sweep. Best effort: the sweep catches whatever this misses."""
        storage = self.engine.storage
        if storage is None:
            return
        final = {str(o["object_key"]) for o in kept if "object_key" in o}
        async with self.engine.sessions() as session:
            rows = (await session.scalars(select(TaskStep.outputs).where(TaskStep.task_id == self.task_id))).all()
        ours = {
            key
            for outputs in rows
            for key in object_keys_in(outputs)
            if key.startswith((f"{RESULTS}/", f"{TMP}/")) and key not in final
        }
        if ours:
            try:
                await storage.delete_many(sorted(ours))
            except Exception:
                log.warning("intermediates_not_deleted", task=self.task.public_id, count=len(ours))
