"""When the periodic jobs run.

``wardrobe scheduler`` (one instance per deployment) runs every job each tick, unless the job has a
longer period. Embedded mode runs no scheduler process, so the API process runs the few it needs
itself. The work is done in the modules' ``jobs.py`` (and ``worker/jobs.py``); each entry here
hands one job the parts of the process it uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core import tracing
from wardrobe.core.cache import Cache
from wardrobe.core.logging import get_logger
from wardrobe.core.outbox import Announcer
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

log = get_logger("wardrobe.scheduler")
TICK_SECONDS = 60.0
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


async def run_scheduler(infra: JobParts, *, once: bool = False) -> None:
    """Run the jobs that are due every tick, until cancelled; ``once``: one tick, every job."""
    period = periods(infra.settings)
    last_run: dict[str, float] = {}

    def due(name: str) -> bool:
        now = time.monotonic()
        if name in last_run and now - last_run[name] < period.get(name, 0):
            return False
        last_run[name] = now
        return True

    while True:
        for job in JOBS:
            if not due(job.__name__):
                continue
            count = await run_safely(job, infra)
            if count is not None:
                log.info("job_done", job=job.__name__, count=count)
        if once:
            return
        await asyncio.sleep(TICK_SECONDS)


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
