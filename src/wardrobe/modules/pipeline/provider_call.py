"""The calls of one step on one provider: its slot (on one of its accounts when operators configured
some), its rate windows, retries with back-off, the circuit breaker's record, and for a vendor job
the submit, the polls (cut short by the vendor's callback) and the cancel.

Every call is bounded by the step's timeout and stops on a cancel or a lost lease. A vendor job's
id is persisted as soon as it exists, so a run that resumes the step re-attaches to the job instead
of submitting again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from datetime import datetime, timedelta
from typing import Any

from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import (
    PROVIDER_CALL_DURATION,
    PROVIDER_CALLS,
    PROVIDER_SLOTS_IN_USE,
    PROVIDER_SLOTS_WAITING,
    STEP_RETRIES,
)
from wardrobe.models import StepStatus
from wardrobe.models.base import utcnow
from wardrobe.modules.pipeline.definition import StepDef
from wardrobe.modules.pipeline.held_slots import runs_in_process
from wardrobe.modules.pipeline.run_state import RunState, TaskCanceled
from wardrobe.modules.providers.accounts import Account, AccountDirectory
from wardrobe.modules.providers.base import (
    AsyncProvider,
    CancellableProvider,
    JobState,
    ProviderError,
    StepContext,
    SyncProvider,
)
from wardrobe.modules.providers.callbacks import step_ref
from wardrobe.modules.providers.slots import wait_for_account_slot, wait_for_slot

log = get_logger("wardrobe.engine")
NO_ACCOUNT_LABEL = "-"  # the account label of a call on the provider's settings


class ProviderCalls:
    """The provider calls of one run."""

    def __init__(self, run: RunState) -> None:
        self.run = run
        self.engine = run.engine
        self.held = run.held

    async def run_step(self, step: StepDef, slug: str, provider: object, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run the step's calls holding one of the provider's slots, if it has a limit — on one of
        its accounts when operators configured accounts for it (accounts.py)."""
        directory = self.engine.accounts
        row = self.run.steps.get(step.id)
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
        with PROVIDER_SLOTS_WAITING.labels(slug).track_inprogress():
            granted = await wait_for_slot(self.engine.slots, slug, holder, limit, lease, within=step.timeout_seconds)
        if not granted:
            PROVIDER_CALLS.labels(slug, NO_ACCOUNT_LABEL, "busy").inc()
            raise ProviderError("provider_busy", retryable=True)
        self.held.took(step.id, slug, holder)
        try:
            with PROVIDER_SLOTS_IN_USE.labels(slug).track_inprogress():
                return await self._call_with_retries(step, provider, inputs, None)
        finally:
            await self.held.release(step.id)

    async def _on_an_account(
        self, step: StepDef, slug: str, provider: object, inputs: dict[str, Any], directory: AccountDirectory
    ) -> dict[str, Any]:
        holder = self._slot_holder(step, slug)
        broken: set[str] = set()
        while True:
            row = self.run.steps.get(step.id)  # read each time: a submit in this loop pins the job too
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
            with PROVIDER_SLOTS_WAITING.labels(slug).track_inprogress():
                name = await wait_for_account_slot(
                    self.engine.slots,
                    slug,
                    holder,
                    [(a.name, a.concurrency) for a in candidates],
                    self.held.lease_seconds,
                    within=step.timeout_seconds,
                )
            if name is None:
                PROVIDER_CALLS.labels(slug, NO_ACCOUNT_LABEL, "busy").inc()
                raise ProviderError("provider_busy", retryable=True)
            self.held.took(step.id, slug, holder, name)
            try:
                account = next(a for a in candidates if a.name == name)
                with PROVIDER_SLOTS_IN_USE.labels(slug).track_inprogress():
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
        task = self.run.task
        if step.type == "sync_api" or not isinstance(self.engine.registry.get(slug), AsyncProvider):
            # A synchronous call cannot be re-attached: a run that resumes this step after a lost
            # lease makes a call of its own while the lost run's may still be in flight at the
            # vendor. Each run therefore holds its own slot, and a lost run's slot stays taken
            # while its call may still run there (until that call's deadline): after a crash the
            # provider briefly has a slot less, never a call more than its limit.
            return f"{task.public_id}:{step.id}:run{task.runs}"
        # An async job lives at the vendor; a resumed run re-attaches to it by its stored id
        # and takes over the same slot.
        return f"{task.public_id}:{step.id}"

    async def _call_with_retries(
        self, step: StepDef, provider: object, inputs: dict[str, Any], account: Account | None
    ) -> dict[str, Any]:
        attempts = step.retries + 1
        for attempt in range(1, attempts + 1):
            self.run.check_interrupts()
            ctx = StepContext(self.run.task.public_id, self.run.task.user_id, step.id, attempt, account=account)
            slug = str(getattr(provider, "slug", "?"))
            # Health is per account when there are accounts: one bad key does not take the rest down.
            health = account.key if account is not None else slug
            account_label = account.name if account is not None else NO_ACCOUNT_LABEL
            if not await self._await_rate(slug, step.timeout_seconds, account):
                # Our own limit, not the provider's failure: no breaker record; the next candidate.
                PROVIDER_CALLS.labels(slug, account_label, "busy").inc()
                raise ProviderError("provider_busy", retryable=True)
            started = time.monotonic()
            try:
                result = await self._call_once(step, provider, inputs, ctx)
            except ProviderError as exc:
                elapsed = time.monotonic() - started
                PROVIDER_CALLS.labels(slug, account_label, "timeout" if exc.code == "timeout" else "error").inc()
                PROVIDER_CALL_DURATION.labels(slug).observe(elapsed)
                self._log_call(step, slug, ctx, started, exc.code)
                # Retryable failures (5xx, timeouts, refused) and a broken account say the provider
                # is unwell; a permanent "bad input" answer says it is working.
                self.engine.breaker.record(health, not (exc.retryable or exc.broken), elapsed)
                if not exc.retryable or attempt == attempts:
                    raise
                STEP_RETRIES.labels(slug, step.action).inc()
                # Exponential back-off with full jitter, so retries from many tasks spread out.
                delay = min(self.engine.config.max_backoff_seconds, step.backoff_seconds * 2 ** (attempt - 1))
                await self.run.sleep_interruptibly(random.uniform(0, delay))  # noqa: S311 - jitter, not security
                continue
            elapsed = time.monotonic() - started
            PROVIDER_CALLS.labels(slug, account_label, "ok").inc()
            PROVIDER_CALL_DURATION.labels(slug).observe(elapsed)
            self._log_call(step, slug, ctx, started, "ok")
            self.engine.breaker.record(health, True, elapsed)
            return result
        raise ProviderError("unreachable")  # pragma: no cover

    def _log_call(self, step: StepDef, slug: str, ctx: StepContext, started: float, outcome: str) -> None:
        """Every vendor call's outcome, under the task's trace id (support follows a task's calls
        by it; the vendor's own id is in the step row)."""
        log.info(
            "vendor_call",
            task=ctx.task_id,
            step=step.id,
            provider=slug,
            account=ctx.account.name if ctx.account is not None else None,
            attempt=ctx.attempt,
            outcome=outcome,
            latency_ms=round((time.monotonic() - started) * 1000, 1),
        )

    async def _call_once(
        self, step: StepDef, provider: object, inputs: dict[str, Any], ctx: StepContext
    ) -> dict[str, Any]:
        if step.type == "sync_api" or not isinstance(provider, AsyncProvider):
            # An async step may fall back to a provider that answers in the call (a vendor job on
            # RunningHub, the local CPU provider when its circuit is open).
            if not isinstance(provider, SyncProvider):
                raise ProviderError("provider_mismatch")
            return await self._call_sync(step, provider, inputs, ctx)
        return await self._call_async(step, provider, inputs, ctx)

    async def _call_sync(
        self, step: StepDef, provider: SyncProvider, inputs: dict[str, Any], ctx: StepContext
    ) -> dict[str, Any]:
        slug = getattr(provider, "slug", "?")
        # Kept in memory and written with the step's end: a call that answers in the call leaves
        # nothing a resumed run could re-attach to, so this needs no transaction of its own (the
        # step was written running, under the lease, before its first call).
        self.run.record(step.id, StepStatus.RUNNING, utcnow(), provider=slug, attempt=ctx.attempt, account=ctx.account)
        await self._call_out(step, provider, step.timeout_seconds)
        try:
            result: dict[str, Any] = await self.run.bounded(
                provider.run(step.action, inputs, ctx), step.timeout_seconds
            )
        except ProviderError:
            self.held.call_over(step.id)  # the vendor answered with an error, or the call's time is up
            raise
        self.held.call_over(step.id)
        return result

    async def _call_async(
        self, step: StepDef, provider: AsyncProvider, inputs: dict[str, Any], ctx: StepContext
    ) -> dict[str, Any]:
        slug = getattr(provider, "slug", "?")
        row = self.run.steps.get(step.id)
        job_id = row.vendor_task_id if row is not None and row.provider == slug else None
        # The step's time counts from its first start (persisted), however often it is resumed.
        started = (row.started_at if row is not None and row.started_at else None) or utcnow()
        deadline = started + timedelta(seconds=step.timeout_seconds)
        if job_id is None:
            await self.run.save_step(
                step.id, StepStatus.RUNNING, provider=slug, attempt=ctx.attempt, account=ctx.account
            )
            # From its submit the job may run at the vendor until its deadline, whether we live or not.
            await self._call_out(step, provider, (deadline - utcnow()).total_seconds())
            try:
                job_id = await self.run.bounded(provider.submit(step.action, inputs, ctx), step.timeout_seconds)
            except ProviderError:
                self.held.call_over(step.id)  # refused, or its time is up: no job of ours runs there
                raise
            # Persisted before anything else happens: from here on a restart re-attaches (on the
            # same account: the job is the account's).
            await self.run.save_step(
                step.id, StepStatus.RUNNING, provider=slug, vendor_task_id=job_id, account=ctx.account
            )
        else:
            await self._call_out(step, provider, (deadline - utcnow()).total_seconds())
        stored = self.run.steps.get(step.id)
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
        watching = hints.watch(step_ref(self.run.task.public_id, step.id)) if hints is not None else None
        with watching if watching is not None else contextlib.nullcontext() as woke:
            while True:
                self.run.check_interrupts()
                remaining = (deadline - utcnow()).total_seconds()
                if remaining <= 0:
                    raise ProviderError("timeout", retryable=False)
                if not await self._await_rate(slug, remaining, ctx.account):
                    continue  # the deadline check above ends it
                status = await self.run.bounded(provider.poll(job_id, ctx), remaining)
                if status.state is not JobState.RUNNING:
                    self.held.call_over(step.id)  # the job is over at the vendor
                if status.state is JobState.SUCCEEDED:
                    return dict(status.outputs)
                if status.state is JobState.FAILED:
                    raise ProviderError(status.error_code or "vendor_failed", retryable=False)
                await self.run.sleep_interruptibly(min(step.poll_interval_seconds, remaining), woke)

    async def _await_rate(self, slug: str, within: float, account: Account | None) -> bool:
        """Take one request from the provider's (or its account's) rate windows (shared by every
        worker through Redis), waiting up to ``within`` seconds for room; False if none came in
        time."""
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
            await self.run.sleep_interruptibly(min(wait * random.uniform(1.0, 1.2), remaining))  # noqa: S311
