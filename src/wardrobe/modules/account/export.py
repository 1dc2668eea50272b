"""A copy of the account's data as JSON (PIPL's right to a copy): ``GET /api/v1/users/me/export``.

The answer is the usual envelope, streamed: the profile and the small parts first, then the long
lists (sessions, tasks, orders, ledger) read in keyset pages of ``PAGE`` rows and written as they
are read. However much an account holds, the process holds one page in memory, and nothing is
truncated. The export reads on its own session (the request's is closed once streaming starts),
so each page is a consistent read, not the whole document.

What it contains: the profile (phone masked, as everywhere), quota and membership, invitations
(own invite code, whether a referrer is bound, the people invited as counts and dates — never
their identities), distributor applications as the applicant sees them (ID number masked), login
sessions (device label, method, times), tasks with their inputs (prompts and the object keys of
uploads) and the object keys of their outputs, orders, and the quota ledger. Deleted tasks are
not in it: they are gone for their owner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.logging import mask_phone
from wardrobe.models import (
    AuthSession,
    DistributorApplication,
    LedgerEntry,
    Order,
    QuotaAccount,
    Referral,
    Task,
    User,
)
from wardrobe.models.base import utcnow
from wardrobe.modules.distributors.schemas import ApplicationOut

PAGE = 500


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _profile(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "phone_masked": mask_phone(user.phone) if user.phone else None,
        "has_password": user.password_hash is not None,
        "wechat_linked": user.wechat_openid is not None,
        "nickname": user.nickname,
        "avatar_url": user.avatar_url,
        "gender": user.gender,
        "birthday": user.birthday,
        "bio": user.bio,
        "region": user.region,
        "role": user.role,
        "created_at": user.created_at,
    }


async def _quota(session: AsyncSession, user_id: int) -> dict[str, Any]:
    account = await session.get(QuotaAccount, user_id)
    if account is None:
        return {"balance": 0, "held": 0, "membership": None}
    membership = (
        {"plan": account.membership_sku, "expires_at": account.membership_expires_at}
        if account.membership_sku
        else None
    )
    return {"balance": account.balance, "held": account.held, "membership": membership}


async def _invitations(session: AsyncSession, user: User) -> dict[str, Any]:
    invited = await session.execute(
        select(Referral.created_at, Referral.reward_status)
        .where(Referral.referrer_id == user.id)
        .order_by(Referral.id.desc())
        .limit(PAGE)
    )
    count = await session.scalar(select(func.count()).select_from(Referral).where(Referral.referrer_id == user.id))
    return {
        "invite_code": user.invite_code,
        "referrer_bound": user.referrer_id is not None,
        "invited_count": int(count or 0),
        # The newest PAGE, as dates and reward states: the invitees are other people.
        "invited": [{"created_at": at, "reward_status": status} for at, status in invited.all()],
    }


def _session_row(row: AuthSession) -> dict[str, Any]:
    return {
        "id": row.id,
        "method": row.method,
        "client": row.client,
        "created_at": row.created_at,
        "last_refreshed_at": row.last_refreshed_at,
        "revoked_at": row.revoked_at,
        "revoke_reason": row.revoke_reason,
    }


def _task_row(task: Task) -> dict[str, Any]:
    outputs = [
        {"name": o.get("name"), "key": o["object_key"], "content_type": o.get("content_type")}
        if "object_key" in o
        else {"name": o.get("name"), "value": o.get("value")}
        for o in task.outputs or ()
    ]
    return {
        "id": task.public_id,
        "feature": task.feature_key,
        "status": task.status,
        "inputs": task.inputs,
        "outputs": outputs,
        "error_code": task.error_code,
        "quota_cost": task.quota_cost,
        "refunded": task.refunded,
        "created_at": task.created_at,
        "finished_at": task.finished_at,
        "files_purged_at": task.files_purged_at,
    }


def _order_row(order: Order) -> dict[str, Any]:
    return {
        "order_no": order.order_no,
        "sku": order.sku,
        "name": order.name,
        "kind": order.kind,
        "quota": order.quota,
        "channel": order.channel,
        "amount_fen": order.amount_fen,
        "paid_fen": order.paid_fen,
        "refunded_fen": order.refunded_fen,
        "status": order.status,
        "created_at": order.created_at,
        "paid_at": order.paid_at,
    }


def _ledger_row(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": entry.amount,
        "hold_delta": entry.hold_delta,
        "balance_after": entry.balance_after,
        "ref": entry.ref,
        "created_at": entry.created_at,
    }


def _after(columns: tuple[Any, ...], last: tuple[Any, ...]) -> Any:
    """Rows strictly after ``last`` in descending order of ``columns`` (a unique combination)."""
    head, *rest = columns
    if not rest:
        return head < last[0]
    return or_(head < last[0], and_(head == last[0], _after(tuple(rest), last[1:])))


async def _paged(
    sessions: async_sessionmaker[AsyncSession],
    stmt: Select[Any],
    columns: tuple[Any, ...],
    render: Callable[[Any], dict[str, Any]],
) -> AsyncIterator[bytes]:
    """A JSON array of ``stmt``'s rows, newest first, one keyset page (and one session) at a time."""
    yield b"["
    last: tuple[Any, ...] | None = None
    first = True
    while True:
        page_stmt = stmt.order_by(*(c.desc() for c in columns)).limit(PAGE)
        if last is not None:
            page_stmt = page_stmt.where(_after(columns, last))
        async with sessions() as session:
            rows = list(await session.scalars(page_stmt))
            chunk = b",".join(_dumps(render(row)) for row in rows)
        if rows:
            yield chunk if first else b"," + chunk
            first = False
            last = tuple(getattr(rows[-1], c.key) for c in columns)
        if len(rows) < PAGE:
            break
    yield b"]"


async def stream_export(
    sessions: async_sessionmaker[AsyncSession], user_id: int, request_id: str
) -> AsyncIterator[bytes]:
    """The envelope with the account's data, as chunks of bytes."""
    yield b'{"success":true,"code":"OK","message":"OK","data":{"exported_at":' + _dumps(utcnow())
    async with sessions() as session:
        user = await session.get(User, user_id)
        if user is None:  # pragma: no cover - the caller was authenticated a moment ago
            return
        yield b',"profile":' + _dumps(_profile(user))
        yield b',"quota":' + _dumps(await _quota(session, user_id))
        yield b',"invitations":' + _dumps(await _invitations(session, user))
        applications = await session.scalars(
            select(DistributorApplication)
            .where(DistributorApplication.user_id == user_id)
            .order_by(DistributorApplication.id.desc())
        )
        views = [ApplicationOut.of(row).model_dump(mode="json") for row in applications]
        yield b',"distributor_applications":' + _dumps(views)
    parts: list[tuple[bytes, Select[Any], tuple[Any, ...], Callable[[Any], dict[str, Any]]]] = [
        (
            b"sessions",
            select(AuthSession).where(AuthSession.user_id == user_id),
            (AuthSession.created_at, AuthSession.id),
            _session_row,
        ),
        (
            b"tasks",
            select(Task).where(Task.user_id == user_id, Task.deleted_at.is_(None)),
            (Task.id,),
            _task_row,
        ),
        (b"orders", select(Order).where(Order.user_id == user_id), (Order.id,), _order_row),
        (b"ledger", select(LedgerEntry).where(LedgerEntry.user_id == user_id), (LedgerEntry.id,), _ledger_row),
    ]
    for name, stmt, columns, render in parts:
        yield b',"' + name + b'":'
        async for chunk in _paged(sessions, stmt, columns, render):
            yield chunk
    yield b'},"request_id":' + _dumps(request_id) + b"}"
