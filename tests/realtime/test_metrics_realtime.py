"""The socket metrics: connections open in this process, and the lag from a change's commit to its
push — measured from the commit time that travels with the event, through the outbox too."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.realtime import Listener, close_client, live
from tests.fixtures.tasks import make_feature, step, wait_until
from wardrobe.core.db import unit_of_work
from wardrobe.core.outbox import TOPIC_PUSH
from wardrobe.models import OutboxMessage, Task
from wardrobe.models.base import utcnow


def value(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture
async def live_api(api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=True)
    await make_feature(api, await login_as(api, "admin"), "pushed", [step("only")], {"r": "$steps.only.result"})
    return api


async def test_a_socket_is_counted_while_connected(live_api: Api) -> None:
    user = await sms_login(live_api.client)
    before = value("wardrobe_sockets_connected")
    async with live(live_api.app) as url:
        listener = Listener()
        await listener.connect(url, user.access)
        assert value("wardrobe_sockets_connected") == before + 1
        refused = Listener()
        with pytest.raises(Exception):  # noqa: B017, PT011 - socketio's ConnectionError
            await refused.connect(url, "not-a-token")
        assert value("wardrobe_sockets_connected") == before + 1  # a refused one never counts
        await close_client(listener.client)

        async def gone() -> bool:
            return value("wardrobe_sockets_connected") == before

        await wait_until(gone)


async def test_every_push_observes_its_lag_from_the_commit(live_api: Api) -> None:
    user = await sms_login(live_api.client)
    events = live_api.infra.runtime.events
    assert events is not None
    async with live(live_api.app) as url:
        listener = Listener()
        await listener.connect(url, user.access)
        try:
            count, sent = value("wardrobe_push_lag_seconds_count"), events.sent
            body = {"feature": "pushed", "inputs": {"key": "p1"}}
            public_id = data(await live_api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)["id"]
            await listener.subscribe(public_id)
            assert (await listener.wait_terminal(public_id))[-1] == "succeeded"

            async def observed() -> bool:
                return value("wardrobe_push_lag_seconds_count") - count == events.sent - sent

            await wait_until(observed)
            assert events.sent - sent >= 2  # at least the claim and the end

            # A push relayed through the outbox is measured from its row's write: one written
            # 20 s ago (its process died before pushing, say) shows a lag of 20 s or more.
            async with unit_of_work(live_api.infra.session_factory) as db:
                task_id = (await db.scalars(select(Task.id).where(Task.public_id == public_id))).one()
                db.add(
                    OutboxMessage(
                        topic=TOPIC_PUSH, payload={"task_id": task_id}, created_at=utcnow() - timedelta(seconds=20)
                    )
                )
            lag_sum, count = value("wardrobe_push_lag_seconds_sum"), value("wardrobe_push_lag_seconds_count")
            live_api.infra.runtime.relay.kick()

            async def relayed() -> bool:
                return value("wardrobe_push_lag_seconds_count") == count + 1

            await wait_until(relayed)
            assert value("wardrobe_push_lag_seconds_sum") - lag_sum >= 20
        finally:
            await close_client(listener.client)
