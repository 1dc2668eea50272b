"""The scheduler's periodic jobs do their work and are idempotent."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from tests.conftest import Api
from tests.fixtures.auth import sms_login
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuthSession, InviteCodePool, OutboxMessage, RefreshToken, SmsCode
from wardrobe.models.base import utcnow
from wardrobe.worker.scheduler import purge_expired_auth_data, refill_invite_pool


async def test_refill_tops_the_pool_up_to_the_target(api_factory: object) -> None:
    api: Api = await api_factory(invite_pool_target=12)  # type: ignore[operator]
    assert await refill_invite_pool(api.infra) == 12
    assert await refill_invite_pool(api.infra) == 0
    await sms_login(api.client)  # takes one code from the pool
    assert await refill_invite_pool(api.infra) == 1
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(func.count()).select_from(InviteCodePool)) == 12


async def test_purge_removes_only_long_dead_auth_data(api: Api) -> None:
    old = await sms_login(api.client)
    fresh = await sms_login(api.client)
    long_ago = utcnow() - timedelta(days=40)
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(SmsCode).where(SmsCode.phone == old.phone).values(expires_at=long_ago))
        await db.execute(update(AuthSession).where(AuthSession.user_id == old.user["id"]).values(revoked_at=long_ago))
    removed = await purge_expired_auth_data(api.infra)
    assert removed == 2  # the old code and the old session's refresh token
    async with unit_of_work(api.infra.session_factory) as db:
        assert await db.scalar(select(func.count()).select_from(SmsCode)) == 1
        tokens = (await db.scalars(select(RefreshToken.session_id))).all()
    assert len(tokens) == 1
    assert (await api.client.get("/api/v1/users/me", headers=fresh.headers)).status_code == 200
    assert await purge_expired_auth_data(api.infra) == 0


async def test_outbox_purge_keeps_what_is_pending_or_recent(api: Api, monkeypatch: object) -> None:
    from wardrobe.worker import scheduler

    monkeypatch.setattr(scheduler, "OUTBOX_PURGE_BATCH", 3)  # type: ignore[attr-defined]
    now = utcnow()
    old, recent = now - timedelta(days=2), now - timedelta(hours=1)
    async with unit_of_work(api.infra.session_factory) as db:
        db.add_all(
            [OutboxMessage(topic="t", payload={"n": n}, published_at=old) for n in range(7)]
            + [
                OutboxMessage(topic="t", payload={"n": "recent"}, published_at=recent),
                OutboxMessage(topic="t", payload={"n": "pending"}, published_at=None),
            ]
        )
    assert await scheduler.purge_published_outbox(api.infra) == 7  # in batches of 3, 3 and 1
    async with unit_of_work(api.infra.session_factory) as db:
        left = sorted(str(p["n"]) for p in (await db.scalars(select(OutboxMessage.payload))).all())
    assert left == ["pending", "recent"]
    assert await scheduler.purge_published_outbox(api.infra) == 0


async def test_the_storage_gc_job_deletes_old_orphans_only(api: Api) -> None:
    import os
    import time

    from wardrobe.worker.scheduler import collect_storage_garbage

    storage = api.infra.storage
    await storage.put("uploads/9/2026/01/orphan.png", b"x" * 10, "image/png")
    await storage.put("uploads/9/2026/11/fresh.png", b"x" * 10, "image/png")
    ancient = time.time() - 30 * 86400
    os.utime(storage._data_path("uploads/9/2026/01/orphan.png"), (ancient, ancient))  # type: ignore[attr-defined]
    assert await collect_storage_garbage(api.infra) == 1
    assert await storage.head("uploads/9/2026/01/orphan.png") is None
    assert await storage.head("uploads/9/2026/11/fresh.png") is not None


async def test_the_loop_runs_due_jobs_on_either_backend_and_stops_cleanly(api_factory: object) -> None:
    """With Redis the lone instance takes the lock; without (SQLite, embedded settings) it runs
    unlocked. Either way it runs the jobs each tick, records them, and stops on its event."""
    import asyncio

    from tests.fixtures.tasks import wait_until
    from wardrobe.models import SchedulerRun
    from wardrobe.worker.scheduler import JobParts, run_scheduler

    api: Api = await api_factory(scheduler_tick_seconds=0.05)  # type: ignore[operator]
    calls: list[int] = []

    async def every_tick(parts: JobParts) -> int:
        calls.append(1)
        return 0

    stop = asyncio.Event()
    loop = asyncio.create_task(run_scheduler(api.infra, stop=stop, jobs=[every_tick], job_periods={}))

    async def ran_thrice() -> bool:
        assert not loop.done()
        return len(calls) >= 3

    await wait_until(ran_thrice)
    stop.set()
    await asyncio.wait_for(loop, 30)
    async with unit_of_work(api.infra.session_factory) as db:
        row = await db.get(SchedulerRun, "every_tick")
    assert row is not None
    assert row.runs == len(calls)
    if api.infra.redis is not None:
        assert await api.infra.redis.get(f"{api.settings.redis_key_prefix}:scheduler:leader") is None
