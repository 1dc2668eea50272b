"""The periodic probe's gauges, read by calling the probe directly: the task stream's depth, pending
messages and oldest age (MariaDB + Redis), the outbox backlog and its oldest row, each dependency up
or down, and free disk."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import make_feature, step, wait_until
from wardrobe.core.db import create_engine, create_session_factory, unit_of_work
from wardrobe.models import OutboxMessage
from wardrobe.models.base import utcnow
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.settings import Settings
from wardrobe.worker.probe import probe_once, stream_names


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def unpublished(api: Api) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        count = await db.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
        )
    return int(count or 0)


async def test_the_outbox_backlog_and_its_oldest_row(api: Api) -> None:
    async with unit_of_work(api.infra.session_factory) as db:
        old = utcnow() - timedelta(minutes=10)
        db.add_all([OutboxMessage(topic="metrics.nobody", payload={"n": n}, created_at=old) for n in range(3)])
        db.add(OutboxMessage(topic="metrics.nobody", payload={"n": "sent"}, created_at=old, published_at=utcnow()))
    await probe_once(api.infra)
    assert value("wardrobe_outbox_backlog") == await unpublished(api) >= 3
    assert (value("wardrobe_outbox_oldest_age_seconds") or 0) >= 600
    assert value("wardrobe_dependency_up", dependency="database") == 1
    assert value("wardrobe_dependency_up", dependency="storage") == 1
    ratio = value("wardrobe_disk_free_ratio", path=str(api.settings.var_dir))
    assert ratio is not None
    assert 0 < ratio <= 1
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(delete(OutboxMessage))
    await probe_once(api.infra)
    assert (value("wardrobe_outbox_backlog"), value("wardrobe_outbox_oldest_age_seconds")) == (0, 0)


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_the_task_stream_depth_pending_and_oldest_age(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    # This API only publishes to the stream; no worker reads it.
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    await make_feature(api, await login_as(api, "admin"), "queued", [step("only")], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    await probe_once(api.infra)
    assert value("wardrobe_queue_depth", queue="tasks") == 0
    assert value("wardrobe_dependency_up", dependency="redis") == 1
    for key in ("q1", "q2"):
        body = {"feature": "queued", "inputs": {"key": key}}
        data(await api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)

    async def relayed() -> bool:
        return await unpublished(api) == 0

    await wait_until(relayed)
    await probe_once(api.infra)
    assert value("wardrobe_queue_depth", queue="tasks") == 2
    assert value("wardrobe_queue_pending", queue="tasks") == 0
    oldest = value("wardrobe_queue_oldest_age_seconds", queue="tasks")
    assert oldest is not None
    assert oldest >= 0

    # A worker takes one message and has not acknowledged it yet.
    redis = api.infra.redis
    assert redis is not None
    stream, group = stream_names(api.settings)
    taken: Any = await redis.xreadgroup(group, "metrics-test", {stream: ">"}, count=1)
    assert len(taken[0][1]) == 1
    await probe_once(api.infra)
    assert value("wardrobe_queue_depth", queue="tasks") == 1
    assert value("wardrobe_queue_pending", queue="tasks") == 1
    await redis.xack(stream, group, taken[0][1][0][0])
    await probe_once(api.infra)
    assert value("wardrobe_queue_pending", queue="tasks") == 0


@dataclass
class Parts:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    redis: Redis | None
    storage: ObjectStorage


async def test_a_dependency_that_does_not_answer_is_down(api: Api) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    settings = api.settings.model_copy(
        update={"database_url": "mysql+asyncmy://root@127.0.0.1:1/nothing", "redis_url": "redis://127.0.0.1:1/0"}
    )
    engine = create_engine(settings)
    redis = Redis.from_url(settings.redis_url)
    try:
        await probe_once(Parts(settings, engine, create_session_factory(engine), redis, api.infra.storage))
        assert value("wardrobe_dependency_up", dependency="database") == 0
        assert value("wardrobe_dependency_up", dependency="redis") == 0
        assert value("wardrobe_dependency_up", dependency="storage") == 1
    finally:
        await redis.aclose()
        await engine.dispose()
    await probe_once(api.infra)
    assert value("wardrobe_dependency_up", dependency="database") == 1
