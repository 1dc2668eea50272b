"""The push publisher under concurrency: sends run in several lanes and batches, yet the states of
one task reach its room in the order they were committed, the last one the latest, and a task is
never in two sends at once. Driven through ``TaskEvents`` with a recording emitter (no sockets):
what is asserted is what it hands to Socket.IO, on both backends."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, update

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import give_quota, internal_id, make_feature, step, wait_until
from wardrobe.core.db import after_commit, unit_of_work
from wardrobe.models import Task
from wardrobe.models.base import utcnow
from wardrobe.realtime.events import TaskEvents

TASKS = 12
CHANGES = 6  # progress 1..CHANGES, committed one after the other per task


class Recorder:
    """An emitter that keeps what each task's room was sent, and notes any overlap of two sends
    to the same room (a second send starting before the first returned)."""

    def __init__(self) -> None:
        self.progress: dict[str, list[int]] = defaultdict(list)
        self.quota: list[dict[str, Any]] = []
        self.in_flight: Counter[str] = Counter()
        self.overlaps = 0
        self.gates: dict[str, asyncio.Event] = {}  # a room's sends wait here while a gate is shut

    async def __call__(self, name: str, body: dict[str, Any], rooms: str | list[str]) -> None:
        if name == "quota.updated":
            self.quota.append(body["payload"])
            return
        # A task's push goes to its zh and en rooms at once (events.task_pushes): keyed by the first.
        room = rooms[0] if isinstance(rooms, list) else rooms
        self.in_flight[room] += 1
        self.overlaps += self.in_flight[room] > 1
        try:
            self.progress[room].append(body["payload"]["progress"])
            # Give the other lanes the loop, as a publish to Redis does, so that sends interleave.
            await asyncio.sleep(0)
            gate = self.gates.get(room)
            if gate is not None:
                await gate.wait()
        finally:
            self.in_flight[room] -= 1


async def _tasks(api: Api, count: int) -> dict[int, str]:
    """``count`` queued tasks of one user (no worker runs them): internal id -> room."""
    await make_feature(
        api,
        await login_as(api, "admin"),
        "ordered",
        [step("only", provider="instant", action="passthrough")],
        {"r": "$steps.only.key"},
    )
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], count)
    rooms: dict[int, str] = {}
    for i in range(count):
        body = {"feature": "ordered", "inputs": {"key": f"k{i}"}}
        public_id = data(await api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)["id"]
        rooms[await internal_id(api, public_id)] = f"task:{public_id}"
    return rooms


async def _commit_progress(api: Api, events: TaskEvents, task_id: int, progress: int) -> None:
    """What the engine does on progress: commit, then announce from the after-commit hook."""
    async with unit_of_work(api.infra.session_factory) as session:
        await session.execute(
            update(Task).where(Task.id == task_id).values(status="running", progress=progress, updated_at=utcnow())
        )
        after_commit(session, lambda: events.changed(task_id))


@contextmanager
def _statements(api: Api) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = api.infra.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def test_concurrent_changes_to_many_tasks_arrive_in_commit_order_per_task(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=False)
    rooms = await _tasks(api, TASKS)
    recorder = Recorder()
    events = TaskEvents(api.infra.session_factory, api.infra.task_views, recorder, lanes=4, batch=5)
    events.start()
    try:

        async def writer(task_id: int) -> None:
            for progress in range(1, CHANGES + 1):
                await _commit_progress(api, events, task_id, progress)

        # Every task's writer at once: changes of all tasks interleave with the sends.
        await asyncio.gather(*(writer(task_id) for task_id in rooms))
        # A send that reads after the last commit of each task, and waits until it went out.
        await asyncio.gather(*(events.deliver(task_id) for task_id in rooms))
    finally:
        await events.stop()
    assert recorder.overlaps == 0
    assert set(recorder.progress) == set(rooms.values())
    for room in rooms.values():
        received = recorder.progress[room]
        # In commit order: a send reads the state after the change that queued it, so a later send
        # never shows an earlier state (two may show the same one: a send in flight can already
        # read a change announced after it was taken).
        assert received == sorted(received), received
        assert received[-1] == CHANGES  # the last one received is the latest
    # Changes still waiting when the next came were merged, never sent twice: at most one send
    # per commit, plus the final delivery.
    sends = sum(len(r) for r in recorder.progress.values())
    assert TASKS <= sends <= TASKS * (CHANGES + 1)
    assert events.sent == sends


async def test_changes_waiting_together_are_read_in_one_batch(api_factory: Any) -> None:
    """Round trips per batch, not per task: 12 tasks announced while no lane was free (here: before
    the publisher starts) are read with one query for the tasks and one for their steps."""
    api: Api = await api_factory(worker_in_process=False)
    rooms = await _tasks(api, TASKS)
    unstarted = TaskEvents(api.infra.session_factory, api.infra.task_views, Recorder())  # announces to nobody
    for task_id in rooms:
        await _commit_progress(api, unstarted, task_id, 1)
    own = api.infra.runtime.events
    assert own is not None
    await own.stop()  # the API's own pushes (of the creations) would read tasks too
    recorder = Recorder()
    events = TaskEvents(api.infra.session_factory, api.infra.task_views, recorder, lanes=4, batch=32)
    with _statements(api) as seen:
        # The deliveries are scheduled before the publisher: all 12 wait when it takes its first batch.
        delivered = asyncio.gather(*(events.deliver(task_id) for task_id in rooms))
        events.start()
        try:
            await delivered
        finally:
            await events.stop()
    task_reads = [s for s in seen if s.lstrip().upper().startswith("SELECT") and "FROM tasks" in s]
    step_reads = [s for s in seen if s.lstrip().upper().startswith("SELECT") and "FROM task_steps" in s]
    assert (len(task_reads), len(step_reads)) == (1, 1)
    assert dict(recorder.progress) == {room: [1] for room in rooms.values()}


async def test_a_slow_send_holds_up_neither_other_tasks_nor_its_own_next_state(api_factory: Any) -> None:
    """While task A's send is stuck (a slow Redis, say), A changes again and B changes: B goes out
    in another lane, A's new state waits for A's send to end (never two at once), then follows it."""
    api: Api = await api_factory(worker_in_process=False)
    rooms = await _tasks(api, 2)
    (a, room_a), (b, room_b) = rooms.items()
    recorder = Recorder()
    recorder.gates[room_a] = asyncio.Event()
    events = TaskEvents(api.infra.session_factory, api.infra.task_views, recorder, lanes=2, batch=1)
    events.start()
    try:
        await _commit_progress(api, events, a, 1)

        async def a_in_flight() -> bool:
            return recorder.in_flight[room_a] == 1

        await wait_until(a_in_flight)
        await _commit_progress(api, events, a, 2)
        await _commit_progress(api, events, b, 7)

        async def b_sent() -> bool:
            return recorder.progress[room_b] == [7]

        await wait_until(b_sent)
        assert recorder.progress[room_a] == [1]  # A's second state waits for its first send
        recorder.gates[room_a].set()
        await events.deliver(a)
    finally:
        await events.stop()
    assert recorder.overlaps == 0
    assert recorder.progress[room_a][:2] == [1, 2]
    assert recorder.progress[room_a][-1] == 2
