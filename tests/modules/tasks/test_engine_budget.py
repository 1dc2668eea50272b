"""What the engine costs the database per task and per step, counted: statements and transactions.

Tasks of a 1-step and a 3-step pipeline of ``instant`` ``passthrough`` steps (the provider answers
at once, so everything counted is the engine's own) are created queued, then run one by one through
the real engine while every statement is recorded. A count is deterministic where time is not: the
heartbeat is set far beyond the test's length, the relay is stopped and no client push runs, so
each run sends exactly the statements of its claim, its steps and its settlement. A step's cost is
the difference between the two pipelines, halved.

The budgets: a step is one transaction (its end, the task's progress and the next step's start,
under the lease) of at most three statements; the claim and the settlement of a task are one
transaction each; a run reads nothing back that it wrote or read at its claim. The relay that
sends each task's final push marks a whole batch in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.statements import checkouts, kinds
from tests.fixtures.tasks import balance, give_quota, make_feature, step
from wardrobe.core.db import unit_of_work
from wardrobe.core.outbox import TOPIC_PUSH
from wardrobe.models import Task, TaskStep
from wardrobe.worker.outbox import OutboxRelay

TASKS = 3  # of each pipeline, after one of each has filled the process's caches

STEP_STATEMENTS = 3  # the task's progress under the lease, the step's row, the next step's row
STEP_COMMITS = 1
# The claim (lease, task, steps, the per-user limit's lock and count, the first step's start) and
# the settlement (the terminal state, the quota hold confirmed with its ledger entry, the user's
# next waiting task, the durable push), with the one step of the 1-step pipeline.
ONE_STEP_TASK_STATEMENTS = 17
CLAIM_AND_FINISH_COMMITS = 2


@dataclass
class Cost:
    """What the runs sent, per task."""

    statements: float
    commits: float
    rollbacks: float
    by_kind: dict[str, float]


@pytest.fixture
async def quiet_api(api_factory: Any) -> Api:
    """Tasks stay queued (no worker runs them): the test runs them through the engine itself."""
    api: Api = await api_factory(
        worker_in_process=False, free_grant_quota=0, task_heartbeat_seconds=600, task_lease_seconds=900
    )
    runtime = api.infra.runtime
    # No relay pass and no client push may interleave with the counted runs.
    runtime.relay.stop()
    if runtime.events is not None:
        await runtime.events.stop()
        runtime.events = None
    return api


async def _queue(api: Api, user: Session, feature: str, count: int) -> list[int]:
    public = []
    for n in range(count):
        body = {"feature": feature, "inputs": {"key": f"{feature}-{n}"}}
        public.append(data(await api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)["id"])
    async with unit_of_work(api.infra.session_factory) as db:
        rows = await db.scalars(select(Task.id).where(Task.public_id.in_(public)).order_by(Task.id))
        return list(rows)


async def _run_all(api: Api, ids: list[int]) -> Cost:
    engine = api.infra.runtime.engine
    with checkouts(api.infra.engine) as seen:
        for task_id in ids:
            assert await engine.run(task_id) == "succeeded"
    n = len(ids)
    counts = kinds(seen)
    commits, rollbacks = counts.pop("COMMIT", 0), counts.pop("ROLLBACK", 0)
    by_kind = {kind: count / n for kind, count in counts.items()}
    return Cost(sum(counts.values()) / n, commits / n, rollbacks / n, by_kind)


async def _costs(api: Api) -> tuple[Cost, Cost, int]:
    admin = await login_as(api, "admin")
    passthrough = {"provider": "instant", "action": "passthrough"}
    await make_feature(api, admin, "one", [step("a", **passthrough)], {"r": "$steps.a.key"})
    await make_feature(api, admin, "three", [step(s, **passthrough) for s in "abc"], {"r": "$steps.c.key"})
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 2 * (TASKS + 1))
    one = await _queue(api, user, "one", TASKS + 1)
    three = await _queue(api, user, "three", TASKS + 1)
    # The first run of each pipeline reads its version once for the process.
    await _run_all(api, [one[0], three[0]])
    return await _run_all(api, one[1:]), await _run_all(api, three[1:]), user.user["id"]


async def test_a_step_is_one_transaction_and_a_task_two_more(quiet_api: Api) -> None:
    one, three = (await _costs(quiet_api))[:2]
    step_statements = (three.statements - one.statements) / 2
    step_commits = (three.commits - one.commits) / 2
    assert step_statements <= STEP_STATEMENTS, (one, three)
    assert step_commits == STEP_COMMITS, (one, three)
    # Nothing of a step is read: the run holds what its claim read and what it wrote since.
    assert three.by_kind.get("SELECT") == one.by_kind.get("SELECT"), (one, three)
    assert one.statements <= ONE_STEP_TASK_STATEMENTS, one
    assert one.commits - step_commits == CLAIM_AND_FINISH_COMMITS, one
    assert three.commits == CLAIM_AND_FINISH_COMMITS + 3 * STEP_COMMITS, three
    # No session is opened only to read (each would end in a ROLLBACK).
    assert one.rollbacks == three.rollbacks == 0, (one, three)


async def test_the_counted_runs_did_all_their_work(quiet_api: Api) -> None:
    """The budgets hold with nothing left out: every step persisted and succeeded, every task
    charged exactly once."""
    *_, user_id = await _costs(quiet_api)
    async with unit_of_work(quiet_api.infra.session_factory) as db:
        tasks = (await db.execute(select(Task.status, Task.progress))).all()
        steps = (await db.execute(select(TaskStep.status, TaskStep.provider, TaskStep.attempts))).all()
    assert set(tasks) == {("succeeded", 100)}
    assert len(tasks) == 2 * (TASKS + 1)
    assert len(steps) == 4 * (TASKS + 1)
    assert set(steps) == {("succeeded", "instant", 1)}
    assert await balance(quiet_api, user_id) == (0, 0, 0)


async def test_a_relay_pass_marks_its_whole_batch_in_one_statement(quiet_api: Api) -> None:
    await _costs(quiet_api)
    sent: list[int] = []

    async def publish(topic: str, payload: dict[str, Any], written_at: Any) -> None:
        sent.append(payload["task_id"])

    relay = OutboxRelay(quiet_api.infra.session_factory, publish, topics=(TOPIC_PUSH,))
    with checkouts(quiet_api.infra.engine) as seen:
        assert await relay.relay_once() == 2 * (TASKS + 1)  # each task's final push
    assert kinds(seen) == {"SELECT": 1, "UPDATE": 1, "COMMIT": 1}
    assert await relay.relay_once() == 0  # all of them marked as sent
    async with unit_of_work(quiet_api.infra.session_factory) as db:
        assert sorted(sent) == list(await db.scalars(select(Task.id).order_by(Task.id)))
