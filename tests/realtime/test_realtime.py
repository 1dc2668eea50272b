"""Live progress over Socket.IO: token on connect, rooms, subscribe with a snapshot, events
in order to the terminal state — in one process, and from a worker process to another API process;
a failed task's message in each socket's language."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.realtime import Listener, live
from tests.fixtures.tasks import (
    OWN_PROCESSES,
    free_port,
    give_quota,
    make_feature,
    spawn_worker,
    step,
    stop_workers,
    wait_until,
    worker_env,
)
from wardrobe.realtime.events import task_pushes
from wardrobe.realtime.hub import socket_language, task_room

RANK = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2, "canceled": 2}


async def _feature(api: Api) -> None:
    admin = await login_as(api, "admin")
    steps = [step("first", timeout_seconds=60), step("second", timeout_seconds=60)]
    await make_feature(api, admin, "live", steps, {"r": "$steps.second.result"})


async def _create(api: Api, user: Session, key: str) -> str:
    body = {"feature": "live", "inputs": {"key": key}}
    return str(data(await api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)["id"])


def _at_vendor(vendor: Any, key: str) -> Any:
    async def held() -> bool:
        return key in vendor.in_flight_keys

    return held


def _moves_forward(states: list[str]) -> bool:
    return all(RANK[a] <= RANK[b] for a, b in itertools.pairwise(states))


async def _one_process_with_a_user(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Api, Session]:
    """An API process that runs tasks itself, the "live" feature, and a user who can run it once."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=True)
    await _feature(api)
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    return api, user


async def test_a_subscriber_sees_its_task_move_to_the_end(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, user = await _one_process_with_a_user(api_factory, fault_vendor, monkeypatch)
    fault_vendor.scenario("fault:k1", hold=True)
    async with live(api.app) as url:
        listener = Listener()
        await listener.connect(url, user.access)
        try:
            task_id = await _create(api, user, "k1")
            ack = await listener.subscribe(task_id)
            assert ack["ok"] is True
            assert [t["id"] for t in ack["tasks"]] == [task_id]
            assert ack["refused"] == []
            await wait_until(_at_vendor(fault_vendor, "fault:k1"))
            fault_vendor.release("fault:k1")
            states = await listener.wait_terminal(task_id)

            # The quota goes to the user's room when the task ends: the unit held is now spent.
            async def quota_told() -> bool:
                return any(q["payload"]["held"] == 0 for q in listener.quota)

            await wait_until(quota_told)
        finally:
            await listener.close()
    assert states[-1] == "succeeded"
    assert _moves_forward(states)
    last = listener.tasks[-1]
    assert last["type"] == "task.updated"
    assert set(last) == {"type", "payload", "traceId"}
    assert last["payload"]["progress"] == 100
    assert [s["status"] for s in last["payload"]["steps"]] == ["succeeded", "succeeded"]

    final = listener.quota[-1]["payload"]
    me = data(await api.client.get("/api/v1/billing/quota", headers=user.headers))
    assert (final["balance"], final["held"]) == (me["balance"], me["held"])


async def test_refusals_and_the_snapshot_after_a_reconnect(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=True)
    await _feature(api)
    owner, stranger = await sms_login(api.client), await sms_login(api.client)
    await give_quota(api, owner.user["id"], 1)
    fault_vendor.scenario("fault:k2", hold=True)
    async with live(api.app) as url:
        tokens = api.infra.tokens
        unknown_session = tokens.issue_access(owner.user["id"], "user", "0" * 32)
        expired = tokens.issue_access(owner.user["id"], "user", "0" * 32, now=0)
        for bad in ("not-a-token", unknown_session, expired):
            with pytest.raises(socketio.exceptions.ConnectionError):
                await Listener().connect(url, bad)
        revoked = await sms_login(api.client)
        data(await api.client.post("/api/v1/auth/logout", headers=revoked.headers))
        with pytest.raises(socketio.exceptions.ConnectionError):
            await Listener().connect(url, revoked.access)

        task_id = await _create(api, owner, "k2")
        snooper = Listener()
        await snooper.connect(url, stranger.access)
        try:
            ack = await snooper.subscribe(task_id, "no-such-task")
            assert ack == {"ok": True, "tasks": [], "refused": [task_id, "no-such-task"]}
            assert (await snooper.client.call("subscribe", {"task_ids": "nope"}, timeout=10))["ok"] is False
        finally:
            await snooper.close()

        first = Listener()
        await first.connect(url, owner.access)
        await first.subscribe(task_id)
        await wait_until(_at_vendor(fault_vendor, "fault:k2"))
        await first.close()  # gone while the task runs
        fault_vendor.release("fault:k2")

        async def finished() -> bool:
            task = data(await api.client.get(f"/api/v1/tasks/{task_id}", headers=owner.headers))
            return bool(task["status"] == "succeeded")

        await wait_until(finished)
        again = Listener()
        await again.connect(url, owner.access)
        try:
            ack = await again.subscribe(task_id)
        finally:
            await again.close()
    [snapshot] = ack["tasks"]
    assert snapshot["status"] == "succeeded"
    assert snapshot["progress"] == 100
    assert not snooper.tasks


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_events_cross_processes_through_redis(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A client on API process A sees a task created through API B and run by a worker process."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api_b: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    await _feature(api_b)
    user = await sms_login(api_b.client)
    await give_quota(api_b, user.user["id"], 1)
    env = worker_env(api_b, tmp_path)
    env["WARDROBE_JWT_SECRET"] = api_b.settings.jwt_secret.get_secret_value()
    worker = spawn_worker(env, tmp_path / "worker.log")
    port = free_port()
    api_env = {**env, "WARDROBE_WORKER_IN_PROCESS": "false"}
    api_a = spawn_worker(api_env, tmp_path / "api_a.log", "serve", "--host", "127.0.0.1", "--port", str(port))
    fault_vendor.scenario("fault:k3", hold=True)
    listener = Listener()
    try:
        url = f"http://127.0.0.1:{port}"

        async def a_is_up() -> bool:
            try:
                await listener.connect(url, user.access)
            except socketio.exceptions.ConnectionError:
                return False
            return True

        await wait_until(a_is_up, within=60, every=0.2)
        task_id = await _create(api_b, user, "k3")
        ack = await listener.subscribe(task_id)
        assert [t["id"] for t in ack["tasks"]] == [task_id]
        await wait_until(_at_vendor(fault_vendor, "fault:k3"), within=60)
        fault_vendor.release("fault:k3")
        states = await listener.wait_terminal(task_id, within=60)
    finally:
        await listener.close()
        stop_workers([api_a, worker])
    assert states[-1] == "succeeded"
    assert _moves_forward(states)
    assert listener.tasks[-1]["payload"]["progress"] == 100


async def test_an_order_paid_through_another_process_is_pushed_to_its_buyer(api_factory: Any) -> None:
    """``order.updated`` then ``quota.updated`` reach the buyer's sockets once the fulfilment
    commits, whichever process confirmed the payment (one process on SQLite; two sharing Redis on
    MariaDB); another user hears nothing."""
    from tests.modules.payments.test_fulfilment import _apply, _order

    api_a: Api = await api_factory()
    api_b: Api = await api_factory() if api_a.settings.redis_url else api_a
    buyer = await sms_login(api_a.client)
    other = await sms_login(api_a.client)
    order = await _order(api_b, buyer.user["id"], "pack-100")
    listener, bystander = Listener(), Listener()
    async with live(api_a.app) as url:
        try:
            await listener.connect(url, buyer.access)
            await bystander.connect(url, other.access)
            assert await _apply(api_b, order.order_no, 990) == "fulfilled"

            async def told() -> bool:
                return bool(listener.orders) and bool(listener.quota)

            await wait_until(told, within=20)
            # The bystander shares the process and the Redis channel: had the event gone to it, it
            # would have arrived before the buyer's quota event that follows the order event.
            assert not bystander.orders
        finally:
            await listener.close()
            await bystander.close()
    [pushed] = listener.orders
    assert pushed["type"] == "order.updated"
    assert pushed["payload"]["order_no"] == order.order_no
    assert pushed["payload"]["status"] == "fulfilled"
    me = data(await api_a.client.get("/api/v1/billing/quota", headers=buyer.headers))
    assert listener.quota[-1]["payload"]["balance"] == me["balance"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # in-process rooms: no Redis delay hides the race
async def test_a_task_ending_while_it_is_being_subscribed_is_not_missed(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task ends (and its push goes out) between the subscription's ownership check and its
    joining the room: the client must still learn the end, from the snapshot in the ack."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    await _feature(api)
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    task_id = await _create(api, user, "k4")  # stays queued: nothing runs tasks here
    events = api.infra.runtime.events
    assert events is not None
    sio = api.app.state.realtime.sio
    join = sio.enter_room
    ended_meanwhile: list[str] = []

    async def enter_room(sid: str, room: str, namespace: str | None = None) -> None:
        if room == f"task:{task_id}" and not ended_meanwhile:
            sent = events.sent
            data(await api.client.post(f"/api/v1/tasks/{task_id}/cancel", headers=user.headers))

            async def pushed() -> bool:
                return events.sent > sent

            await wait_until(pushed)  # to a room nobody has joined yet
            ended_meanwhile.append(room)
        await join(sid, room, namespace)

    monkeypatch.setattr(sio, "enter_room", enter_room)
    async with live(api.app) as url:
        listener = Listener()
        await listener.connect(url, user.access)
        try:
            ack = await listener.subscribe(task_id)
        finally:
            await listener.close()
    assert ended_meanwhile
    [snapshot] = ack["tasks"]
    known = listener.states(task_id) or [snapshot["status"]]
    assert known[-1] == "canceled"


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_the_end_of_a_task_is_pushed_even_if_the_process_that_ran_it_dies_before_pushing(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Process A runs the task to its end and commits, but dies before it pushes (its push queue and
    its outbox relay are gone). The watcher on process B still hears the end: the push was written
    to the outbox with the terminal state, and B's relay sends it."""
    from sqlalchemy import select

    from wardrobe.core.db import unit_of_work
    from wardrobe.models import OutboxMessage, Task

    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api_b: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    api_a: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    await _feature(api_b)
    user = await sms_login(api_b.client)
    await give_quota(api_b, user.user["id"], 1)
    task_id = await _create(api_b, user, "k5")
    # A loses the ability to push: nothing it announces after commit goes out, nor does its relay run.
    events_a = api_a.infra.runtime.events
    assert events_a is not None
    await events_a.stop()
    api_a.infra.runtime.relay.stop()
    async with live(api_b.app) as url:
        listener = Listener()
        await listener.connect(url, user.access)
        try:
            ack = await listener.subscribe(task_id)
            assert [t["status"] for t in ack["tasks"]] == ["queued"]
            async with unit_of_work(api_a.infra.session_factory) as db:
                internal_id = (await db.scalars(select(Task.id).where(Task.public_id == task_id))).one()
            assert await api_a.infra.runtime.engine.run(internal_id) == "succeeded"
            states = await listener.wait_terminal(task_id, within=30)
        finally:
            await listener.close()
    assert states[-1] == "succeeded"
    async with unit_of_work(api_b.infra.session_factory) as db:
        pushes = (await db.scalars(select(OutboxMessage).where(OutboxMessage.topic == "push"))).all()
    assert [(m.payload, m.published_at is not None) for m in pushes] == [({"task_id": internal_id}, True)]


def test_a_socket_language_comes_from_auth_then_accept_language() -> None:
    assert socket_language({"token": "t", "lang": "en"}, {"HTTP_ACCEPT_LANGUAGE": "zh-CN"}) == "en"
    assert socket_language({"token": "t", "lang": "fr"}, {"HTTP_ACCEPT_LANGUAGE": "en-US"}) == "en"
    assert socket_language({"token": "t"}, {}) == "zh"
    assert socket_language(None, {"HTTP_ACCEPT_LANGUAGE": "en;q=0.3, zh;q=0.9"}) == "zh"


def test_only_a_failed_task_is_pushed_twice() -> None:
    running = {"id": "t1", "status": "running", "error": None}
    assert task_pushes("t1", running) == [([task_room("t1"), task_room("t1", "en")], running)]
    failed = {"id": "t1", "status": "failed", "error": {"code": "canceled", "message": "任务已取消"}}
    (zh_room, zh), (en_room, en) = task_pushes("t1", failed)
    assert (zh_room, zh) == (task_room("t1"), failed)
    assert en_room == task_room("t1", "en") != zh_room
    assert en == {**failed, "error": {"code": "canceled", "message": "The task was canceled"}}


async def test_each_socket_hears_a_failure_in_its_language(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auth.lang``, else the handshake's Accept-Language, else zh: in pushes and in the snapshot."""
    api, user = await _one_process_with_a_user(api_factory, fault_vendor, monkeypatch)
    fault_vendor.scenario("fault:lang", hold=True)
    task_id = await _create(api, user, "lang")
    listeners = {"zh": Listener(), "auth-en": Listener(), "header-en": Listener()}
    async with live(api.app) as url:
        try:
            await listeners["zh"].connect(url, user.access)
            await listeners["auth-en"].connect(url, user.access, lang="en")
            await listeners["header-en"].connect(url, user.access, headers={"Accept-Language": "en-US"})
            for listener in listeners.values():
                assert (await listener.subscribe(task_id))["ok"] is True
            await wait_until(_at_vendor(fault_vendor, "fault:lang"))
            # The first step, held until every socket is subscribed, succeeds; the second fails.
            fault_vendor.scenario("fault:lang", fail_code="vendor_says_no")
            fault_vendor.release("fault:lang")
            for listener in listeners.values():
                assert (await listener.wait_terminal(task_id))[-1] == "failed"
            snapshot = (await listeners["auth-en"].subscribe(task_id))["tasks"][0]
        finally:
            for listener in listeners.values():
                await listener.close()
    errors = {name: listener.tasks[-1]["payload"]["error"] for name, listener in listeners.items()}
    assert errors["zh"] == {"code": "processing_failed", "message": "处理失败"}
    assert errors["auth-en"] == errors["header-en"] == {"code": "processing_failed", "message": "Processing failed"}
    assert snapshot["error"] == errors["auth-en"]
    # Each socket heard the end once: the two language rooms never both reach one socket.
    for listener in listeners.values():
        assert listener.states(task_id).count("failed") == 1
