"""What staff read: users (found by exact keys), everything about one user, their ledger, and the
audit log. Reads are not audited; phone numbers appear masked only."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.errors import NotFound
from wardrobe.core.pagination import split_page
from wardrobe.models import AuditLog, LedgerEntry, Order, Task, User
from wardrobe.models.base import utcnow
from wardrobe.modules.admin import repository
from wardrobe.modules.admin.repository import AuditFilter, UserFilter
from wardrobe.modules.admin.schemas import AdminUserOut
from wardrobe.modules.auth import repository as auth_repo
from wardrobe.modules.billing import quota
from wardrobe.modules.payments import repository as payments_repo
from wardrobe.modules.users import repository as users_repo
from wardrobe.modules.users.schemas import UserOut

DETAIL_ROWS = 20  # ledger rows, sessions and orders shown in a user's detail
DETAIL_TASKS = 10

Page = dict[str, Any]


def user_row(user: User) -> dict[str, Any]:
    base = UserOut.of(user).model_dump()
    return AdminUserOut(
        **base, status=user.status, invite_code=user.invite_code, referrer_id=user.referrer_id
    ).model_dump(mode="json")


def ledger_row(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "user_id": entry.user_id,
        "kind": entry.kind,
        "amount": entry.amount,
        "hold_delta": entry.hold_delta,
        "balance_after": entry.balance_after,
        "held_after": entry.held_after,
        "ref": entry.ref,
        "note": entry.note,
        "actor_id": entry.actor_id,
        "created_at": entry.created_at,
    }


def audit_row(row: AuditLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "actor_id": row.actor_id,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "reason": row.reason,
        "before": row.before,
        "after": row.after,
        "created_at": row.created_at,
    }


async def list_users(session: AsyncSession, found: UserFilter, *, limit: int, before_id: int | None) -> Page:
    users = await repository.list_users(session, found, limit=limit + 1, before_id=before_id)
    page, next_cursor = split_page(users, limit, lambda u: u.id)
    return {"items": [user_row(u) for u in page], "next_cursor": next_cursor}


async def ledger_page(session: AsyncSession, user_id: int, *, limit: int, before_id: int | None) -> Page:
    if await users_repo.get_by_id(session, user_id) is None:
        raise NotFound()
    rows = await quota.ledger_page(session, user_id, limit=limit + 1, before_id=before_id)
    page, next_cursor = split_page(rows, limit, lambda e: e.id)
    return {"items": [ledger_row(e) for e in page], "next_cursor": next_cursor}


async def audit_page(session: AsyncSession, found: AuditFilter, *, limit: int, after_id: int | None) -> Page:
    rows = await repository.audit_page(session, found, limit=limit + 1, after_id=after_id)
    page, next_cursor = split_page(rows, limit, lambda r: r.id)
    return {"items": [audit_row(r) for r in page], "next_cursor": next_cursor}


# -- A user's detail ----------------------------------------------------------------------------


async def _quota(session: AsyncSession, user_id: int) -> dict[str, Any]:
    found = await repository.quota_with_plan(session, user_id)
    if found is None:
        return {"balance": 0, "held": 0, "available": 0, "membership": None}
    account, plan_name = found
    membership = None
    if account.membership_sku is not None:
        expires = account.membership_expires_at
        membership = {
            "sku": account.membership_sku,
            "name": plan_name,
            "expires_at": expires,
            "active": expires is not None and expires > utcnow(),
        }
    return {
        "balance": account.balance,
        "held": account.held,
        "available": account.balance - account.held,
        "membership": membership,
    }


async def _sessions(session: AsyncSession, user_id: int) -> list[dict[str, Any]]:
    rows = await auth_repo.recent_sessions(session, user_id, limit=DETAIL_ROWS)
    return [
        {
            "id": s.id,
            "device": s.device,
            "client": s.client,
            "method": s.method,
            "ip_masked": s.ip_masked,
            "created_at": s.created_at,
            "last_used_at": s.last_refreshed_at or s.created_at,
            "revoked_at": s.revoked_at,
            "revoke_reason": s.revoke_reason,
        }
        for s in rows
    ]


def _order_row(order: Order) -> dict[str, Any]:
    return {
        "order_no": order.order_no,
        "sku": order.sku,
        "name": order.name,
        "amount_fen": order.amount_fen,
        "refunded_fen": order.refunded_fen,
        "channel": order.channel,
        "status": order.status,
        "created_at": order.created_at,
        "paid_at": order.paid_at,
    }


def task_row(task: Task, providers: list[str], retry_of: str | None) -> dict[str, Any]:
    duration = None
    if task.started_at is not None and task.finished_at is not None:
        duration = int((task.finished_at - task.started_at).total_seconds() * 1000)
    return {
        "id": task.public_id,
        "user_id": task.user_id,
        "feature": task.feature_key,
        "status": task.status,
        "progress": task.progress,
        "quota_cost": task.quota_cost,
        "refunded": task.refunded,
        "error_code": task.error_code,
        "error_message": task.error_message,
        "providers": providers,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "duration_ms": duration,
        "retry_of": retry_of,
    }


async def _tasks(session: AsyncSession, user_id: int) -> dict[str, Any]:
    by_status = await repository.task_counts(session, user_id)
    recent = await repository.recent_tasks(session, user_id, limit=DETAIL_TASKS)
    providers = await repository.providers_of(session, [t.id for t, _ in recent])
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "recent": [task_row(t, providers.get(t.id, []), retry_of) for t, retry_of in recent],
    }


async def user_detail(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """Profile, quota and membership, the newest ledger rows, sessions and orders, a summary of the
    tasks and the distributor application: a fixed number of bounded queries."""
    user = await users_repo.get_by_id(session, user_id)
    if user is None:
        raise NotFound()
    ledger = await quota.ledger_page(session, user_id, limit=DETAIL_ROWS, before_id=None)
    orders = await payments_repo.orders_page(session, user_id=user_id, limit=DETAIL_ROWS, before_id=None)
    application = await repository.latest_application(session, user_id)
    return {
        "user": user_row(user),
        "quota": await _quota(session, user_id),
        "ledger": [ledger_row(e) for e in ledger],
        "sessions": await _sessions(session, user_id),
        "orders": [_order_row(o) for o in orders[:DETAIL_ROWS]],
        "tasks": await _tasks(session, user_id),
        "distributor": None
        if application is None
        else {"application_id": application.id, "status": application.status},
    }
