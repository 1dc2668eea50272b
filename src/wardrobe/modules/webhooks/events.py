"""What a committed change means to a user's systems: the events of a durable push's subject (a
task or an order), read once it has committed. Event ids are derived from what happened, so the
same change announced twice is the same event (and the same ``webhook-id``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import Order, OrderStatus, QuotaAccount, Task, TaskStatus
from wardrobe.models.base import utcnow

EVENTS = ("task.succeeded", "task.failed", "task.canceled", "order.paid", "quota.low")
_TERMINAL = {TaskStatus.SUCCEEDED.value, TaskStatus.FAILED.value, TaskStatus.CANCELED.value}


@dataclass(frozen=True, slots=True)
class Event:
    user_id: int
    type: str
    id: str
    data: dict[str, Any]

    def body(self, at: datetime) -> dict[str, Any]:
        """The JSON a receiver gets (Standard Webhooks' shape: type, timestamp, data)."""
        return {"type": self.type, "timestamp": at.isoformat(), "data": self.data}


async def events_of(session: AsyncSession, payload: dict[str, Any], quota_low: int) -> list[Event]:
    if "task_id" in payload:
        return await _task_events(session, int(payload["task_id"]), quota_low)
    if "order_id" in payload:
        return await _order_events(session, int(payload["order_id"]))
    return []


async def _task_events(session: AsyncSession, task_id: int, quota_low: int) -> list[Event]:
    task = await session.get(Task, task_id)
    if task is None or task.status not in _TERMINAL or task.deleted_at is not None:
        return []
    data = {
        "id": task.public_id,
        "feature": task.feature_key,
        "status": task.status,
        "error_code": task.error_code,
        "quota_cost": task.quota_cost,
        "refunded": task.refunded,
        # Keys, not signed URLs (which expire): GET /api/v1/tasks/{id} signs them when asked.
        "outputs": [
            {"name": o.get("name"), "key": o.get("object_key"), "content_type": o.get("content_type")}
            for o in task.outputs or ()
            if "object_key" in o
        ],
    }
    events = [Event(task.user_id, f"task.{task.status}", f"task.{task.status}.{task.public_id}", data)]
    account = await session.get(QuotaAccount, task.user_id)
    if account is not None and account.balance - account.held <= quota_low:
        available = account.balance - account.held
        # At most one a day while the quota stays low: a reminder, not one per task.
        day = utcnow().date().isoformat()
        events.append(Event(task.user_id, "quota.low", f"quota.low.{task.user_id}.{day}", {"available": available}))
    return events


async def _order_events(session: AsyncSession, order_id: int) -> list[Event]:
    order = (await session.execute(select(Order).where(Order.id == order_id))).scalar_one_or_none()
    if order is None or order.status != OrderStatus.FULFILLED.value:
        return []
    data = {
        "order_no": order.order_no,
        "sku": order.sku,
        "amount_fen": order.amount_fen,
        "paid_fen": order.paid_fen,
        "quota": order.quota,
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
    }
    return [Event(order.user_id, "order.paid", f"order.paid.{order.order_no}", data)]
