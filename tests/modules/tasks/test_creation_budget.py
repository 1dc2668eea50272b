"""What creating a task costs the database, counted (a count is deterministic, a time is not):
the request's own unit of work sends at most CREATION_BUDGET round trips in one transaction, and
a replay of the same Idempotency-Key writes nothing. Also: queue positions stay right while the
queue grows faster than the positions' snapshot is renewed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.statements import Checkout, checkouts
from tests.fixtures.tasks import give_quota, make_feature, step

# The caller's session check, the Idempotency-Key lookup, the task, the quota hold (account, hold,
# ledger), the outbox row, the count of tasks queued since the positions' snapshot, and COMMIT.
CREATION_BUDGET = 9
SNAPSHOT_READ = "ORDER BY tasks.id"


@pytest.fixture
async def quiet_api(api_factory: Any) -> Api:
    # Nothing runs the tasks: they stay queued, as under a backlog.
    api: Api = await api_factory(worker_in_process=False)
    return api


async def _feature(api: Api) -> None:
    admin = await login_as(api, "admin")
    await make_feature(
        api, admin, "budget", [step("only", provider="instant", action="passthrough")], {"a": "$steps.only.result"}
    )


async def _create(api: Api, user: Session, key: str, idem: str) -> Any:
    headers = {**user.headers, "Idempotency-Key": idem}
    return await api.client.post("/api/v1/tasks", json={"feature": "budget", "inputs": {"key": key}}, headers=headers)


def _the_request(seen: list[Checkout], marker: str) -> Checkout:
    [request] = [c for c in seen if c.touches(marker)]
    return request


async def test_a_creation_is_one_transaction_within_its_statement_budget(quiet_api: Api) -> None:
    await _feature(quiet_api)
    user = await sms_login(quiet_api.client)
    await give_quota(quiet_api, user.user["id"], 20)
    data(await _create(quiet_api, user, "warm", "budget-warm-1"), 202)  # caches: feature, pipeline, membership

    with checkouts(quiet_api.infra.engine) as seen:
        created = data(await _create(quiet_api, user, "measured", "budget-key-1"), 202)
    request = _the_request(seen, "INSERT INTO tasks")
    own = [s for s in request.sql if SNAPSHOT_READ not in s]
    assert len(own) <= CREATION_BUDGET, "\n".join(request.sql)
    assert request.commits == 1
    assert not request.touches("SAVEPOINT")
    assert len(request.sql) - len(own) <= 1  # at most one snapshot renewal
    assert created["queue_position"] == 1

    # The same key and body again: the first task, and nothing written.
    with checkouts(quiet_api.infra.engine) as seen:
        replay = data(await _create(quiet_api, user, "measured", "budget-key-1"), 202)
    assert replay["id"] == created["id"]
    request = _the_request(seen, "tasks.idempotency_key =")
    assert not any(s.startswith(("INSERT", "UPDATE", "DELETE")) for s in request.sql), request.sql
    assert request.statements <= 5  # session check, lookup, position, steps, end


async def test_queue_positions_count_every_task_ahead_while_the_queue_grows(quiet_api: Api) -> None:
    await _feature(quiet_api)
    users = [await sms_login(quiet_api.client) for _ in range(3)]
    positions = []
    ids = []
    for n in range(9):  # well within one snapshot period: most come after its end
        created = data(await _create(quiet_api, users[n % 3], f"q{n}", f"queue-key-{n}"), 202)
        positions.append(created["queue_position"])
        ids.append(created["id"])
    assert positions == list(range(9))
    # Read back: each one still sees every task created before it.
    for n, (task_id, user) in enumerate(zip(ids, [users[i % 3] for i in range(9)], strict=True)):
        got = data(await quiet_api.client.get(f"/api/v1/tasks/{task_id}", headers=user.headers))
        assert got["queue_position"] == n
    # One canceled from the middle: those behind it move up once the snapshot is renewed; until
    # then a position may still count it (at most a second), never count one too few.
    data(await quiet_api.client.post(f"/api/v1/tasks/{ids[4]}/cancel", headers=users[4 % 3].headers))
    last = data(await quiet_api.client.get(f"/api/v1/tasks/{ids[8]}", headers=users[8 % 3].headers))
    assert last["queue_position"] in (7, 8)
