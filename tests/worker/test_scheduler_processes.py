"""Two real `wardrobe scheduler` processes on one MariaDB + Redis: the first leads and runs the jobs,
the second stands by; SIGKILL the leader and the standby leads within the lease and runs them;
SIGTERM releases the lock on the way out. Who leads is read from each process's log."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.tasks import OWN_PROCESSES, spawn_worker, stop_workers, wait_until, worker_env
from wardrobe.core.db import unit_of_work
from wardrobe.models import SchedulerRun

pytestmark = [OWN_PROCESSES, pytest.mark.parametrize("backend", ["mariadb"], indirect=True)]

LEASE = "1.5"
TICK = "0.1"


def events(log: Path) -> list[str]:
    found = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        try:
            found.append(str(json.loads(line).get("event")))
        except ValueError:
            continue
    return found


async def refills(api: Api) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        runs = await db.scalar(select(SchedulerRun.runs).where(SchedulerRun.job == "refill_invite_pool"))
    return int(runs or 0)


async def test_a_killed_leader_is_replaced_and_a_stopped_one_lets_go(api_factory: Any, tmp_path: Path) -> None:
    api: Api = await api_factory()
    env = worker_env(api, tmp_path, scheduler_lease_seconds=LEASE, scheduler_tick_seconds=TICK, extra_providers="[]")
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = spawn_worker(env, logs[0], "scheduler")
    processes: list[subprocess.Popen[bytes]] = [first]  # those that must be alive
    spawned = [first]
    try:

        async def logged(index: int, event: str) -> bool:
            alive = [p for p in processes if p.poll() is None]
            assert alive == processes, [log.read_text(errors="replace")[-3000:] for log in logs]
            return event in events(logs[index])

        await wait_until(lambda: logged(0, "scheduler_leader"), within=120, every=0.2)
        second = spawn_worker(env, logs[1], "scheduler")
        processes.append(second)
        spawned.append(second)
        await wait_until(lambda: logged(1, "scheduler_standby"), within=120, every=0.2)
        before = await refills(api)

        async def ran_more() -> bool:
            return await refills(api) >= before + 3

        await wait_until(ran_more, within=120, every=0.2)
        assert "scheduler_leader" not in events(logs[1])
        assert "job_done" not in events(logs[1])

        first.send_signal(signal.SIGKILL)  # no release: the standby waits out the lease
        first.wait(timeout=30)
        processes.remove(first)
        await wait_until(lambda: logged(1, "scheduler_leader"), within=60, every=0.2)
        taken_over = await refills(api)
        await wait_until(lambda: _more(api, taken_over), within=60, every=0.2)
        assert "job_done" in events(logs[1])

        second.send_signal(signal.SIGTERM)  # a clean stop: the lock is released for a standby
        assert second.wait(timeout=60) == 0
        assert "scheduler_released" in events(logs[1])
        assert api.infra.redis is not None
        assert await api.infra.redis.get(f"{api.settings.redis_key_prefix}:scheduler:leader") is None
    finally:
        stop_workers(spawned)


async def _more(api: Api, than: int) -> bool:
    return await refills(api) > than
