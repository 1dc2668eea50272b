"""When the periodic jobs run.

``wardrobe scheduler`` runs every job each tick (``WARDROBE_SCHEDULER_TICK_SECONDS``), unless the
job has a longer period. Any number of instances may run: the one holding the leader lock in Redis
(``leader.py``) runs the jobs, the others stand by to take over. When each job last started and
succeeded is kept in the database (``scheduler_runs.py``), so a restarted or newly elected instance
runs at once what fell due while none ran, once, and nothing that ran within its period.

A job still running when its instance loses the lock is left to finish, and may overlap a run
by the new leader: the jobs settle such races in the database (conditional updates checked by
rowcount, deletions of what may already be gone; a membership ends once per term however many
runs race), and the claim in the database keeps a job with a period from starting twice within it.

Embedded mode runs no scheduler process, so the API process runs the few it needs itself. The
work is done in the modules' ``jobs.py`` (and ``worker/jobs.py``); each entry here hands one job
the parts of the process it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core import tracing
from wardrobe.core.cache import Cache
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import (
    SCHEDULER_HEARTBEAT,
    SCHEDULER_JOB_LAST_SUCCESS,
    SCHEDULER_JOB_RUNS,
    SCHEDULER_LEADER,
)
from wardrobe.core.outbox import Announcer
from wardrobe.models.base import utcnow
from wardrobe.modules.admin.stats import jobs as stats_jobs
from wardrobe.modules.auth import jobs as auth_jobs
from wardrobe.modules.billing import jobs as billing_jobs
from wardrobe.modules.payments import jobs as payments_jobs
from wardrobe.modules.payments.gateway import Payments
from wardrobe.modules.storage import jobs as storage_jobs
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.tasks import jobs as tasks_jobs
from wardrobe.modules.users import jobs as users_jobs
from wardrobe.settings import Settings
from wardrobe.worker import jobs as worker_jobs
from wardrobe.worker import scheduler_runs
from wardrobe.worker.leader import Leadership
from wardrobe.worker.scheduler_runs import is_due, read_runs

log = get_logger("wardrobe.scheduler")
# Outbox rows deleted per transaction, so that no purge holds many row locks.
OUTBOX_PURGE_BATCH = 5000
# Embedded mode: how often the API process tops the invite pool up, and runs its housekeeping.
INVITE_POOL_CHECK_SECONDS = 60.0
EMBEDDED_PERIOD_SECONDS = 600.0


class JobParts(Protocol):
    """The parts of a process the jobs use (a process's ``Infra`` record has them all)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def storage(self) -> ObjectStorage: ...
    @property
    def payments(self) -> Payments: ...
    @property
    def cache(self) -> Cache: ...
    @property
    def announcer(self) -> Announcer: ...
    @property
    def redis(self) -> Redis | None: ...


Job = Callable[[JobParts], Awaitable[int]]


async def refill_invite_pool(infra: JobParts) -> int:
    settings = infra.settings
    return await users_jobs.refill_invite_pool(
        infra.session_factory, settings.invite_pool_target, settings.invite_code_length
    )


async def purge_expired_auth_data(infra: JobParts) -> int:
    return await auth_jobs.purge_expired_auth_data(infra.session_factory)


async def purge_published_outbox(infra: JobParts) -> int:
    return await worker_jobs.purge_published_outbox(infra.session_factory, batch=OUTBOX_PURGE_BATCH)


async def release_expired_holds(infra: JobParts) -> int:
    return await tasks_jobs.release_expired_holds(infra.session_factory)


async def reconcile_payments(infra: JobParts) -> int:
    return await payments_jobs.reconcile_payments(
        infra.session_factory,
        infra.payments,
        settings=infra.settings,
        cache=infra.cache,
        announcer=infra.announcer,
    )


async def expire_memberships(infra: JobParts) -> int:
    return await billing_jobs.expire_memberships(infra.session_factory, infra.cache)


async def expire_tmp_objects(infra: JobParts) -> int:
    return await storage_jobs.expire_tmp_objects(infra.storage)


async def collect_storage_garbage(infra: JobParts) -> int:
    grace = timedelta(days=infra.settings.storage_gc_grace_days)
    return await storage_jobs.collect_storage_garbage(infra.session_factory, infra.storage, grace=grace)


async def delete_pending_objects(infra: JobParts) -> int:
    return await storage_jobs.delete_pending_objects(infra.session_factory, infra.storage)


async def apply_retention(infra: JobParts) -> int:
    return await storage_jobs.apply_retention(infra.session_factory, infra.storage, days=infra.settings.retention_days)


async def roll_up_stats(infra: JobParts) -> int:
    return await stats_jobs.roll_up_stats(infra.session_factory)


# In the order a tick runs them.
JOBS: tuple[Job, ...] = (
    refill_invite_pool,
    purge_expired_auth_data,
    purge_published_outbox,
    release_expired_holds,
    reconcile_payments,
    expire_memberships,
    expire_tmp_objects,
    collect_storage_garbage,
    delete_pending_objects,
    apply_retention,
    roll_up_stats,
)
# What the API process of embedded mode runs every EMBEDDED_PERIOD_SECONDS.
EMBEDDED_JOBS: tuple[Job, ...] = (delete_pending_objects, apply_retention, expire_memberships, roll_up_stats)


def periods(settings: Settings) -> dict[str, float]:
    """Seconds between runs of the jobs that do not run every tick (a full bucket listing is not a
    once-a-minute job)."""
    return {
        "collect_storage_garbage": settings.storage_gc_interval_hours * 3600,
        "expire_tmp_objects": 3600,
        "apply_retention": 3600,
        "roll_up_stats": 900,
    }


async def run_safely(job: Job, infra: JobParts) -> int | None:
    """Run ``job`` once, under a trace id of its own; a failure is logged (None) and never stops
    the jobs after it."""
    with tracing.bound(tracing.job_trace_id(job.__name__)):
        try:
            return await job(infra)
        except Exception:
            log.exception("job_failed", job=job.__name__)
            return None


async def run_scheduler(
    infra: JobParts,
    *,
    once: bool = False,
    stop: asyncio.Event | None = None,
    jobs: Sequence[Job] = JOBS,
    job_periods: dict[str, float] | None = None,
) -> None:
    """Run the jobs that are due, tick after tick, while this instance holds the leader lock (any
    number of instances may run: one leads, the others stand by), until ``stop`` is set — then the
    lock is released for a standby. Cancelled instead, it keeps the lock until the lease runs out,
    as a killed process would. ``once``: every job once, now, lock or not (an operator's run)."""
    period = periods(infra.settings) if job_periods is None else job_periods
    if once:
        await read_runs(infra.session_factory, [job.__name__ for job in jobs])  # the rows to claim
        for job in jobs:
            await Ticks(infra, jobs, period, None).run_job(job, force=True)
        return
    settings = infra.settings
    leadership = None
    if infra.redis is not None:
        key = f"{settings.redis_key_prefix}:scheduler:leader"
        leadership = Leadership(infra.redis, key, settings.scheduler_lease_seconds)
    else:
        log.warning("scheduler_without_lock", reason="no WARDROBE_REDIS_URL: run one instance only")
    await Ticks(infra, jobs, period, leadership).run(stop or asyncio.Event())


class Ticks:
    """One scheduler instance's loop: the lock kept in the background, the jobs run in the tick."""

    def __init__(
        self, infra: JobParts, jobs: Sequence[Job], period: dict[str, float], leadership: Leadership | None
    ) -> None:
        self.infra = infra
        self.jobs = jobs
        self.period = period
        self.leadership = leadership
        self.wake = asyncio.Event()

    @property
    def leading(self) -> bool:
        return self.leadership is None or self.leadership.leading

    async def run(self, stop: asyncio.Event) -> None:
        helpers = [asyncio.create_task(self._wake_on(stop))]
        if self.leadership is not None:
            helpers.append(asyncio.create_task(self._keep_lock(self.leadership, stop)))
        try:
            while not stop.is_set():
                SCHEDULER_HEARTBEAT.set(time.time())
                await self.tick(stop)
                await self._sleep()
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            # Only on a clean stop: a cancelled loop stands for a process that died.
            if stop.is_set() and self.leadership is not None:
                await self.leadership.release()
            SCHEDULER_LEADER.set(0)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake.set()

    async def _keep_lock(self, leadership: Leadership, stop: asyncio.Event) -> None:
        """Renew (or, standing by, try to take) the lock every third of the lease; a new leader
        ticks at once rather than at the end of its sleep.

        It also ends by itself on a stop, not only when cancelled: a cancellation that lands as a
        Redis call times out can be swallowed on the way (seen once in CI, the loop then renewed
        forever and the shutdown hung), and a clean stop must not depend on it."""
        while not stop.is_set():
            was = leadership.leading
            leading = await leadership.hold()
            SCHEDULER_LEADER.set(int(leading))
            if leading and not was:
                self.wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(leadership.lease / 3):
                    await stop.wait()

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.infra.settings.scheduler_tick_seconds):
                await self.wake.wait()
        self.wake.clear()

    async def tick(self, stop: asyncio.Event) -> None:
        """Run, in order, each job whose period passed since it last started (in any instance)."""
        SCHEDULER_LEADER.set(int(self.leading))
        try:
            states = await read_runs(self.infra.session_factory, [job.__name__ for job in self.jobs])
        except Exception:
            log.exception("scheduler_state_unreadable")
            return
        for state in states.values():
            if state.last_succeeded_at is not None:
                SCHEDULER_JOB_LAST_SUCCESS.labels(state.job).set(state.last_succeeded_at.timestamp())
        now = utcnow()
        for job in self.jobs:
            name = job.__name__
            if stop.is_set() or not is_due(states[name], now, self.period.get(name, 0)):
                continue
            if not self.leading:
                # A standby, or a leader that lost the lock during this tick: start nothing more.
                SCHEDULER_JOB_RUNS.labels(name, "skipped").inc()
                continue
            await self.run_job(job)

    async def run_job(self, job: Job, *, force: bool = False) -> None:
        """Claim the run in the database (so no other instance starts it within its period), run
        it, record how it ended; a failure is logged and never stops the jobs after it."""
        name = job.__name__
        sessions = self.infra.session_factory
        try:
            claimed = await scheduler_runs.claim(sessions, name, utcnow(), self.period.get(name, 0), force=force)
        except Exception:
            log.exception("scheduler_state_unwritable", job=name)
            SCHEDULER_JOB_RUNS.labels(name, "error").inc()
            return
        if not claimed:
            SCHEDULER_JOB_RUNS.labels(name, "skipped").inc()
            return
        error: str | None = None
        try:
            count = await job(self.infra)
        except Exception as exc:
            log.exception("job_failed", job=name)
            # The class only: a message may carry data that has no place in a table staff read.
            error = type(exc).__name__
        finished = utcnow()
        with contextlib.suppress(Exception):
            await scheduler_runs.finish(sessions, name, finished, error)
        if error is None:
            log.info("job_done", job=name, count=count)
            SCHEDULER_JOB_RUNS.labels(name, "ok").inc()
            SCHEDULER_JOB_LAST_SUCCESS.labels(name).set(finished.timestamp())
        else:
            SCHEDULER_JOB_RUNS.labels(name, "error").inc()


async def _repeat(infra: JobParts, jobs: Sequence[Job], seconds: float) -> None:
    while True:
        for job in jobs:
            await run_safely(job, infra)
        await asyncio.sleep(seconds)


async def keep_invite_pool_full(infra: JobParts) -> None:
    """Embedded mode's stand-in for the scheduler: top the invite pool up now and then."""
    await _repeat(infra, (refill_invite_pool,), INVITE_POOL_CHECK_SECONDS)


async def run_embedded_housekeeping(infra: JobParts) -> None:
    """Embedded mode's stand-in for the scheduler: deletions the store missed, and retention."""
    await _repeat(infra, EMBEDDED_JOBS, EMBEDDED_PERIOD_SECONDS)
