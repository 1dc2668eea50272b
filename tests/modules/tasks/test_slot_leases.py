"""A provider slot lasts as long as its run's heartbeat keeps it, not as long as its calls could:
a slot of an in-process provider is leased for the task's short lease and renewed with it, so a
worker that dies mid-call gives it back one lease later (the call died with the worker)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import internal_id, make_feature, step, wait_until
from wardrobe.modules.pipeline.config import EngineConfig
from wardrobe.modules.pipeline.engine import PipelineEngine
from wardrobe.modules.providers.base import StepContext

LEASE_SECONDS = 0.3


class _Gate:
    """An in-process provider whose calls wait until the test opens the gate."""

    slug = "gate"
    in_process = True

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.running = 0

    def supports(self, action: str) -> bool:
        return action == "work"

    async def run(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        self.running += 1
        try:
            await self.open.wait()
        finally:
            self.running -= 1
        return {"result": "done"}


async def test_an_in_process_slot_lives_by_its_runs_heartbeat_and_lapses_one_lease_after_it_stops(
    api_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api: Api = await api_factory(worker_in_process=False)
    gate = _Gate()
    api.infra.providers.register(gate)
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "gated", [step("only", provider="gate")], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    created = data(
        await api.client.post("/api/v1/tasks", json={"feature": "gated", "inputs": {"key": "g"}}, headers=user.headers),
        202,
    )
    task_id = await internal_id(api, created["id"])

    store = api.infra.runtime.engine.slots
    renewals: list[str] = []
    renew = store.renew
    dead = False  # from then on the run's renewals no longer reach the store, as if it had died

    async def counted_renew(provider: str, holder: str, account: str, lease_seconds: float) -> bool:
        renewals.append(holder)
        return dead or await renew(provider, holder, account, lease_seconds)

    monkeypatch.setattr(store, "renew", counted_renew)
    config = EngineConfig(lease_seconds=LEASE_SECONDS, heartbeat_seconds=0.05, provider_concurrency={"gate": 1})
    engine = PipelineEngine(
        api.infra.session_factory, api.infra.providers, config=config, worker_id="worker-a", slots=store
    )
    run = asyncio.create_task(engine.run(task_id))
    try:

        async def calling() -> bool:
            return gate.running == 1

        await wait_until(calling)
        assert await store.in_use("gate") == 1

        async def renewed_many_times() -> bool:
            return len(renewals) >= 10  # heartbeats 0.05 s apart: well past the first 0.3 s lease

        await wait_until(renewed_many_times)
        assert await store.in_use("gate") == 1  # still the run's: renewed, not lapsed
        assert not await store.try_acquire("gate", "another-run", 1, 60)

        dead = True

        async def lapsed() -> bool:
            return await store.in_use("gate") == 0

        # Generous next to the 0.3 s lease; the lease of a call's longest duration was minutes.
        await wait_until(lapsed, within=10)
        assert gate.running == 1  # the call never ended: the slot came back with the lease alone
        assert await store.try_acquire("gate", "another-run", 1, 60)
    finally:
        gate.open.set()
    assert await run == "succeeded"
