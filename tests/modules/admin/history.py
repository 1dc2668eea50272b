"""A user's history written straight into the database (orders, tasks with steps, ledger rows, a
distributor application, a membership), for the admin reads to find, and a statement counter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine

from wardrobe.core.db import unit_of_work
from wardrobe.models import (
    DistributorApplication,
    LedgerKind,
    Order,
    PipelineSchema,
    QuotaAccount,
    Task,
    TaskStep,
)
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.seed import seed_plans

TASK_STATUSES = ("succeeded", "failed", "canceled", "queued", "running")


async def add_orders(api: Any, user_id: int, count: int, **fields: Any) -> list[str]:
    numbers = []
    async with unit_of_work(api.infra.session_factory) as db:
        for n in range(count):
            number = f"WD{uuid.uuid4().hex[:24].upper()}"
            values: dict[str, Any] = {
                "order_no": number,
                "user_id": user_id,
                "sku": "pack-100",
                "kind": "quota_pack",
                "name": "100 次加油包",
                "quota": 100,
                "channel": "wechat_native",
                "amount_fen": 990 + n,
                "status": "fulfilled",
                "paid_fen": 990 + n,
                "transaction_id": f"4200{n:06d}",
                "expires_at": utcnow() + timedelta(minutes=30),
                "paid_at": utcnow(),
            }
            db.add(Order(**(values | fields)))
            numbers.append(number)
    return numbers


async def add_tasks(api: Any, user_id: int, count: int) -> dict[str, int]:
    """``count`` tasks cycling through the statuses, each with two steps on two providers."""
    by_status: dict[str, int] = {}
    async with unit_of_work(api.infra.session_factory) as db:
        schema = PipelineSchema(key=f"hist-{uuid.uuid4().hex[:8]}", version=1, definition={"steps": []})
        db.add(schema)
        await db.flush()
        for n in range(count):
            status = TASK_STATUSES[n % len(TASK_STATUSES)]
            by_status[status] = by_status.get(status, 0) + 1
            started = utcnow()
            task = Task(
                public_id=uuid.uuid4().hex,
                user_id=user_id,
                feature_key="cutout",
                pipeline_schema_id=schema.id,
                status=status,
                inputs={"image": "k"},
                quota_cost=1,
                request_hash="0" * 64,
                started_at=started,
                finished_at=started + timedelta(milliseconds=1500) if status in TASK_STATUSES[:3] else None,
                error_code="provider_failed" if status == "failed" else None,
            )
            db.add(task)
            await db.flush()
            db.add(TaskStep(task_id=task.id, step_id="a", status="succeeded", provider="local"))
            db.add(TaskStep(task_id=task.id, step_id="b", status="succeeded", provider="runninghub"))
    return by_status


async def add_ledger(api: Any, user_id: int, count: int) -> None:
    async with unit_of_work(api.infra.session_factory) as db:
        for n in range(count):
            await quota.credit(db, user_id, 1 + n, kind=LedgerKind.GRANT, ref=f"hist:{uuid.uuid4().hex}", note=f"n{n}")


async def add_application(api: Any, user_id: int) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        row = DistributorApplication(
            user_id=user_id,
            active_user_id=user_id,
            real_name="张三",
            phone="13912345678",
            id_number_masked="1101**********1234",
            id_wrapped_key="wrapped",
            id_key_ref="local:test",
            id_nonce=b"n" * 12,
            id_ciphertext=b"c" * 32,
        )
        db.add(row)
        await db.flush()
        return int(row.id)


async def give_membership(api: Any, user_id: int, sku: str = "member-monthly") -> None:
    async with unit_of_work(api.infra.session_factory) as db:
        await seed_plans(db)
        await db.execute(
            update(QuotaAccount)
            .where(QuotaAccount.user_id == user_id)
            .values(membership_sku=sku, membership_expires_at=utcnow() + timedelta(days=30))
        )


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
