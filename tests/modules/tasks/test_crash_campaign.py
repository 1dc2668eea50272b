"""A crash campaign in small, on MariaDB + Redis: real `wardrobe worker` processes run the demo
cutout on 1600×1200 photos (seconds of CPU per step) on the local provider, whose two slots every
worker shares. Workers are killed with SIGKILL while a step of theirs is running and holds a slot,
a fresh worker is started after each kill. The local provider works in the worker's own process,
so a dead worker's slot must come back with its short lease — not after the longest its calls
could last (minutes), which left every other task waiting for a slot until it failed
`provider_busy`. Every task must succeed, each quota hold be settled once, and the balances add up.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, sms_login
from tests.fixtures.tasks import OWN_PROCESSES, TERMINAL, spawn_worker, stop_workers, wait_until, worker_env
from tests.modules.providers.images import encode, subject_on_background
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, QuotaAccount, Task, TaskStep

pytestmark = OWN_PROCESSES

USERS = 3
TASKS_PER_USER = 2
KILLS = 3
LIMIT = 2  # the local provider's slots, across every worker
FREE_QUOTA = 10  # what a new user is granted (Settings.free_grant_quota)
# Generous bounds for conditions (never timing assertions): a step of a live worker holds a slot
# (after a kill too), and every task is terminal after the last kill. Steps take seconds and a
# dead worker's slot comes back within its 3 s lease; with the old lease (2 × 120 s × 2 tries +
# 31 s) two kills took both slots, and the waiting steps failed `provider_busy` after 120 s.
SLOT_HELD_WITHIN = 45.0
SETTLED_WITHIN = 60.0

SETTINGS = {
    "task_lease_seconds": "3",
    "task_heartbeat_seconds": "0.3",
    "task_reap_interval_seconds": "0.5",
    "provider_concurrency": json.dumps({"local": LIMIT}),
    "extra_providers": "[]",
    "log_json": "true",
}


async def _upload(api: Api, user: Session, body: bytes) -> str:
    grant = data(
        await api.client.post(
            "/api/v1/uploads",
            json={"filename": "photo.png", "content_type": "image/png", "size": len(body)},
            headers=user.headers,
        )
    )
    upload = grant["upload"]
    resp = await api.client.request(upload["method"], upload["url"], content=body, headers=upload["headers"])
    assert resp.status_code == 201, resp.text
    return str(grant["object_key"])


async def _holding_a_slot(api: Api, alive: set[int]) -> tuple[int, str] | None:
    """(worker pid, task public id) of a running step whose run holds a local slot right now, on a
    worker still alive; None if there is none."""
    redis = api.infra.redis
    assert redis is not None
    members = await redis.zrangebyscore(f"{api.settings.redis_key_prefix}:slots:local", time.time(), "+inf")
    held = {(m.decode() if isinstance(m, bytes) else str(m)).partition("\x1f")[2] for m in members}
    async with unit_of_work(api.infra.session_factory) as db:
        rows = (
            await db.execute(
                select(Task.public_id, Task.lease_owner, Task.runs, TaskStep.step_id)
                .join(TaskStep, TaskStep.task_id == Task.id)
                .where(Task.status == "running", TaskStep.status == "running")
            )
        ).all()
    for row in rows:
        pid = int(str(row.lease_owner).split(":")[1]) if row.lease_owner else 0
        if pid in alive and f"{row.public_id}:{row.step_id}:run{row.runs}" in held:
            return pid, str(row.public_id)
    return None


async def _tasks(api: Api) -> dict[str, tuple[str, str | None, int, int]]:
    """public id -> (status, error code, runs, user id)."""
    async with unit_of_work(api.infra.session_factory) as db:
        rows = (await db.execute(select(Task.public_id, Task.status, Task.error_code, Task.runs, Task.user_id))).all()
    return {r.public_id: (r.status, r.error_code, int(r.runs), int(r.user_id)) for r in rows}


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_workers_killed_mid_step_give_their_slots_back_and_every_task_settles_once(
    api_factory: Any, tmp_path: Path
) -> None:
    api: Api = await api_factory(worker_in_process=False, seed_demo_data=True, storage_local_root=tmp_path / "objects")
    env = worker_env(api, tmp_path, **SETTINGS)
    workers: dict[int, subprocess.Popen[bytes]] = {}

    def start_worker() -> None:
        worker = spawn_worker(env, tmp_path / f"worker{len(workers)}.log")
        workers[worker.pid] = worker

    photo, _ = subject_on_background(1600, 1200)
    body = encode(photo)
    users = [await sms_login(api.client) for _ in range(USERS)]
    start_worker()
    start_worker()
    try:
        for user in users:
            image = await _upload(api, user, body)
            for _ in range(TASKS_PER_USER):
                resp = await api.client.post(
                    "/api/v1/tasks", json={"feature": "cutout", "inputs": {"image": image}}, headers=user.headers
                )
                data(resp, 202)

        killed: list[str] = []  # the task each kill interrupted
        for _ in range(KILLS):
            alive = {pid for pid, w in workers.items() if w.poll() is None}
            found: list[tuple[int, str]] = []

            async def mid_step(alive: set[int] = alive, found: list[tuple[int, str]] = found) -> bool:
                hit = await _holding_a_slot(api, alive)
                if hit is not None:
                    found.append(hit)
                return hit is not None

            try:
                await wait_until(mid_step, within=SLOT_HELD_WITHIN, every=0.1)
            except TimeoutError:
                pytest.fail(f"after {len(killed)} kills no live worker's step got a slot: {await _tasks(api)}")
            pid, public_id = found[-1]
            workers[pid].send_signal(signal.SIGKILL)
            assert workers[pid].wait(timeout=10) == -signal.SIGKILL
            killed.append(public_id)
            start_worker()

        async def all_terminal() -> bool:
            states = await _tasks(api)
            return len(states) == USERS * TASKS_PER_USER and all(s[0] in TERMINAL for s in states.values())

        try:
            await wait_until(all_terminal, within=SETTLED_WITHIN, every=0.25)
        except TimeoutError:
            pytest.fail(f"tasks not terminal {SETTLED_WITHIN:.0f} s after the last kill: {await _tasks(api)}")
    finally:
        stop_workers(list(workers.values()))

    final = await _tasks(api)
    assert {public_id: status for public_id, (status, _, _, _) in final.items() if status != "succeeded"} == {}
    assert all(final[public_id][2] >= 2 for public_id in killed)  # each interrupted run was resumed
    await _assert_money_exact(api, final, [u.user["id"] for u in users])


async def _assert_money_exact(api: Api, final: dict[str, tuple[str, str | None, int, int]], users: list[int]) -> None:
    """One reserve and one confirm per task (every one succeeded); per user, the balance is the
    free grant less the tasks, nothing is held, and the ledger adds up to the balance."""
    async with unit_of_work(api.infra.session_factory) as db:
        entries = (await db.execute(select(LedgerEntry.ref, LedgerEntry.kind))).all()
        accounts = {r.user_id: (r.balance, r.held) for r in (await db.execute(select(QuotaAccount))).scalars()}
        totals = select(LedgerEntry.user_id, func.sum(LedgerEntry.amount)).group_by(LedgerEntry.user_id)
        sums = {int(uid): int(total) for uid, total in (await db.execute(totals)).all()}
    kinds = Counter((ref, kind) for ref, kind in entries if ref.startswith("task:"))
    for public_id in final:
        ref = f"task:{public_id}"
        assert (kinds[(ref, "reserve")], kinds[(ref, "confirm")], kinds[(ref, "cancel")]) == (1, 1, 0), public_id
    for uid in users:
        assert accounts[uid] == (FREE_QUOTA - TASKS_PER_USER, 0)
        assert sums[uid] == FREE_QUOTA - TASKS_PER_USER
