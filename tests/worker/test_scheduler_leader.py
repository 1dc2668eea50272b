"""Several `wardrobe scheduler` instances on one deployment: one leads (a lock in Redis) and runs
the jobs, the others stand by and take over when it dies; what ran when is kept in the database,
so a restart catches up a missed run once and never reruns a recent one.

The instances run in this process, each with its own app (parts) on the shared MariaDB + Redis and
a short tick and lease. Cancelling an instance's loop stands for a killed process: it does not
release its lock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.tasks import wait_until
from wardrobe.core.db import unit_of_work
from wardrobe.models import SchedulerRun
from wardrobe.models.base import utcnow
from wardrobe.worker.leader import Leadership
from wardrobe.worker.scheduler import Job, JobParts, Ticks, run_scheduler

pytestmark = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)

TICK = 0.05
LEASE = 3.0


@dataclass
class Calls:
    """Who ran a counting job, and at which claimed start (read back from the database)."""

    by: list[str] = field(default_factory=list)
    started: list[datetime] = field(default_factory=list)
    running: int = 0
    overlapped: bool = False


def counting_job(calls: Calls, names: dict[int, str]) -> Job:
    async def job(parts: JobParts) -> int:
        calls.overlapped |= calls.running > 0
        calls.running += 1
        calls.by.append(names[id(parts)])
        try:
            async with unit_of_work(parts.session_factory) as db:
                started = await db.scalar(select(SchedulerRun.last_started_at).where(SchedulerRun.job == job.__name__))
            assert started is not None
            calls.started.append(started)
            await asyncio.sleep(0)  # a real job awaits: another instance could start meanwhile
            return 1
        finally:
            calls.running -= 1

    job.__name__ = f"count_{uuid.uuid4().hex[:8]}"
    return job


def runs(job: Job, outcome: str) -> float:
    value = REGISTRY.get_sample_value("wardrobe_scheduler_job_runs_total", {"name": job.__name__, "outcome": outcome})
    return value or 0.0


def skipped_more(job: Job, count: int) -> Callable[[], Awaitable[bool]]:
    target = runs(job, "skipped") + count

    async def reached() -> bool:
        return runs(job, "skipped") >= target

    return reached


async def start_instances(api_factory: Any, count: int) -> list[Api]:
    return [await api_factory(scheduler_tick_seconds=TICK, scheduler_lease_seconds=LEASE) for _ in range(count)]


def ticks(api: Api, jobs: list[Job], periods: dict[str, float]) -> Ticks:
    key = f"{api.settings.redis_key_prefix}:scheduler:leader"
    assert api.infra.redis is not None
    return Ticks(api.infra, jobs, periods, Leadership(api.infra.redis, key, LEASE))


@asynccontextmanager
async def running(instance: Ticks) -> AsyncIterator[tuple[asyncio.Task[None], asyncio.Event]]:
    stop = asyncio.Event()
    task = asyncio.create_task(instance.run(stop))
    try:
        yield task, stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def at_least(calls: Calls, count: int, by: str | None = None) -> Callable[[], Awaitable[bool]]:
    async def reached() -> bool:
        return len([b for b in calls.by if by is None or b == by]) >= count

    return reached


async def test_one_instance_runs_each_job_once_per_period_and_a_standby_takes_over(api_factory: Any) -> None:
    a, b = await start_instances(api_factory, 2)
    names = {id(a.infra): "a", id(b.infra): "b"}
    calls = Calls()
    job = counting_job(calls, names)
    period = 0.3
    instances = {name: ticks(api, [job], {job.__name__: period}) for name, api in (("a", a), ("b", b))}
    stops = {name: asyncio.Event() for name in instances}
    tasks = {name: asyncio.create_task(instances[name].run(stops[name])) for name in instances}
    try:
        await wait_until(at_least(calls, 4), within=60)
        leader = calls.by[0]
        survivor = "b" if leader == "a" else "a"
        assert set(calls.by) == {leader}  # the standby ran nothing
        assert instances[leader].leading
        assert not instances[survivor].leading

        # The leader dies without releasing its lock (SIGKILL): the other takes over once the
        # lease runs out, and runs the job on.
        tasks[leader].cancel()
        await asyncio.gather(tasks[leader], return_exceptions=True)
        before = len(calls.by)
        await wait_until(at_least(calls, 3, by=survivor), within=60)
        assert calls.by[before:] == [survivor] * (len(calls.by) - before)
        assert instances[survivor].leading
    finally:
        for name, task in tasks.items():
            stops[name].set()
            await asyncio.gather(task, return_exceptions=True)
    assert not calls.overlapped
    # Never twice within a period, across both instances: each claimed start is a period or more
    # after the one before it (the claim is a conditional UPDATE in the database).
    gaps = [later - earlier for earlier, later in zip(calls.started, calls.started[1:], strict=False)]
    assert min(gaps) >= timedelta(seconds=period)
    async with unit_of_work(a.infra.session_factory) as db:
        row = await db.get(SchedulerRun, job.__name__)
    assert row is not None
    # The killed leader may have claimed a run in the database and died before running it, as a
    # SIGKILLed process would: at most that one.
    assert len(calls.by) <= row.runs <= len(calls.by) + 1
    assert row.last_succeeded_at is not None
    # A clean stop released the lock: nothing is left for a next instance to wait out.
    assert a.infra.redis is not None
    assert await a.infra.redis.get(f"{a.settings.redis_key_prefix}:scheduler:leader") is None


async def test_a_leader_whose_lock_is_taken_stops_starting_jobs(api_factory: Any) -> None:
    (a,) = await start_instances(api_factory, 1)
    calls = Calls()
    job = counting_job(calls, {id(a.infra): "a"})
    instance = ticks(a, [job], {})  # due every tick
    async with running(instance):
        await wait_until(at_least(calls, 2), within=60)
        assert a.infra.redis is not None
        # Another holder now (the lease ran out during a partition and a standby took it).
        await a.infra.redis.set(f"{a.settings.redis_key_prefix}:scheduler:leader", b"someone-else", px=60_000)

        async def stepped_down() -> bool:
            return not instance.leading

        await wait_until(stepped_down, within=60)
        # A whole tick as a non-leader: the jobs of earlier ticks have finished.
        await wait_until(skipped_more(job, 1), within=60)
        done = len(calls.by)
        await wait_until(skipped_more(job, 3), within=60)

        assert len(calls.by) == done
        # Its shutdown leaves the other holder's lock alone (compare-and-delete).
        assert await a.infra.redis.get(f"{a.settings.redis_key_prefix}:scheduler:leader") == b"someone-else"


async def test_a_restart_runs_a_missed_job_once_and_not_a_recent_one(api_factory: Any) -> None:
    (a,) = await start_instances(api_factory, 1)
    names = {id(a.infra): "a"}
    missed, recent, ticker = Calls(), Calls(), Calls()
    missed_job, recent_job, tick_job = (counting_job(c, names) for c in (missed, recent, ticker))
    hour = 3600.0
    now = utcnow()
    async with unit_of_work(a.infra.session_factory) as db:
        # Last ran three periods ago (the scheduler was down): due once, not three times.
        db.add(SchedulerRun(job=missed_job.__name__, last_started_at=now - timedelta(hours=3), runs=7))
        db.add(SchedulerRun(job=recent_job.__name__, last_started_at=now - timedelta(minutes=5), runs=7))
    periods = {missed_job.__name__: hour, recent_job.__name__: hour}
    async with running(ticks(a, [missed_job, recent_job, tick_job], periods)):
        await wait_until(at_least(ticker, 5), within=60)
    assert len(missed.by) == 1
    assert recent.by == []
    async with unit_of_work(a.infra.session_factory) as db:
        rows = {r.job: r for r in (await db.scalars(select(SchedulerRun))).all()}
    assert rows[missed_job.__name__].runs == 8
    assert rows[recent_job.__name__].runs == 7
    assert rows[missed_job.__name__].last_succeeded_at is not None
    assert rows[recent_job.__name__].last_succeeded_at is None
    success = REGISTRY.get_sample_value(
        "wardrobe_scheduler_job_last_success_timestamp_seconds", {"name": missed_job.__name__}
    )
    assert success is not None
    assert success >= now.timestamp()


async def test_a_failing_job_is_recorded_and_the_next_job_still_runs(api_factory: Any) -> None:
    (a,) = await start_instances(api_factory, 1)
    calls = Calls()
    after = counting_job(calls, {id(a.infra): "a"})

    async def broken(parts: JobParts) -> int:
        raise RuntimeError("vendor said no")

    broken.__name__ = f"broken_{uuid.uuid4().hex[:8]}"
    await run_scheduler(a.infra, once=True, jobs=[broken, after], job_periods={})
    assert calls.by == ["a"]
    async with unit_of_work(a.infra.session_factory) as db:
        row = await db.get(SchedulerRun, broken.__name__)
    assert row is not None
    assert row.last_error == "RuntimeError"
    assert row.last_succeeded_at is None
    assert runs(broken, "error") == 1
    assert runs(after, "ok") == 1
