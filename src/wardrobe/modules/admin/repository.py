"""Queries of the staff console's reads: users, what a user has, the audit log, export batches.

Each read of a user's detail is one statement, bounded by a LIMIT or a GROUP BY, so the detail
costs the same number of queries whatever the user's history (tests/modules/admin hold it to that).
The tasks tables are read here straight from the models: the tasks module sits above this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from wardrobe.models import (
    AuditLog,
    DistributorApplication,
    LedgerEntry,
    Order,
    Plan,
    QuotaAccount,
    Task,
    TaskStep,
    User,
)


@dataclass(frozen=True, slots=True)
class UserFilter:
    """Exact matches only: a phone is looked up whole, never by a part of it."""

    phone: str | None = None
    user_id: int | None = None
    invite_code: str | None = None
    role: str | None = None
    status: str | None = None


async def list_users(session: AsyncSession, found: UserFilter, *, limit: int, before_id: int | None) -> list[User]:
    """Newest first, keyset-paginated on the primary key; ``limit`` rows at most."""
    stmt = select(User).order_by(User.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(User.id < before_id)
    if found.phone:
        stmt = stmt.where(User.phone == found.phone)
    if found.user_id is not None:
        stmt = stmt.where(User.id == found.user_id)
    if found.invite_code:
        stmt = stmt.where(User.invite_code == found.invite_code)
    if found.role:
        stmt = stmt.where(User.role == found.role)
    if found.status:
        stmt = stmt.where(User.status == found.status)
    return list(await session.scalars(stmt))


async def quota_with_plan(session: AsyncSession, user_id: int) -> tuple[QuotaAccount, str | None] | None:
    """The quota account and the name of its membership's plan, in one statement."""
    stmt = (
        select(QuotaAccount, Plan.name)
        .outerjoin(Plan, Plan.sku == QuotaAccount.membership_sku)
        .where(QuotaAccount.user_id == user_id)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def task_counts(session: AsyncSession, user_id: int) -> dict[str, int]:
    """Tasks by status (deleted ones included: support sees what was run and charged)."""
    stmt = select(Task.status, func.count()).where(Task.user_id == user_id).group_by(Task.status)
    return {status: int(n) for status, n in (await session.execute(stmt)).all()}


async def recent_tasks(session: AsyncSession, user_id: int, *, limit: int) -> list[tuple[Task, str | None]]:
    """The user's newest tasks, each with the public id of the task it retries (one statement)."""
    original = aliased(Task)
    stmt = (
        select(Task, original.public_id)
        .outerjoin(original, original.id == Task.retry_of)
        .where(Task.user_id == user_id)
        .order_by(Task.id.desc())
        .limit(limit)
    )
    return [(task, retry_of) for task, retry_of in (await session.execute(stmt)).all()]


async def providers_of(session: AsyncSession, task_ids: list[int]) -> dict[int, list[str]]:
    """The providers each task's steps used, in step order (one statement for all the tasks)."""
    if not task_ids:
        return {}
    stmt = (
        select(TaskStep.task_id, TaskStep.provider)
        .where(TaskStep.task_id.in_(task_ids), TaskStep.provider.is_not(None))
        .order_by(TaskStep.task_id, TaskStep.id)
    )
    used: dict[int, list[str]] = {}
    for task_id, provider in (await session.execute(stmt)).all():
        slugs = used.setdefault(task_id, [])
        if provider is not None and provider not in slugs:
            slugs.append(provider)
    return used


async def latest_application(session: AsyncSession, user_id: int) -> DistributorApplication | None:
    stmt = (
        select(DistributorApplication)
        .where(DistributorApplication.user_id == user_id)
        .order_by(DistributorApplication.id.desc())
        .limit(1)
    )
    found: DistributorApplication | None = await session.scalar(stmt)
    return found


# -- The audit log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor_id: int | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # inclusive


async def audit_page(session: AsyncSession, found: AuditFilter, *, limit: int, after_id: int | None) -> list[AuditLog]:
    """Newest first by time, then id, so that each filter walks one of the (…, created_at) indexes
    of ``audit_logs`` backwards. The cursor is the id of the last row given out; its time is looked
    up in the same statement (a cursor naming no row gives an empty page)."""
    stmt = select(AuditLog).order_by(AuditLog.created_at.desc(), AuditLog.id.desc()).limit(limit)
    if found.actor_id is not None:
        stmt = stmt.where(AuditLog.actor_id == found.actor_id)
    if found.action:
        stmt = stmt.where(AuditLog.action == found.action)
    if found.target_type:
        stmt = stmt.where(AuditLog.target_type == found.target_type)
    if found.target_id:
        stmt = stmt.where(AuditLog.target_id == found.target_id)
    if found.since is not None:
        stmt = stmt.where(AuditLog.created_at >= found.since)
    if found.until is not None:
        stmt = stmt.where(AuditLog.created_at <= found.until)
    if after_id is not None:
        anchor = select(AuditLog.created_at).where(AuditLog.id == after_id).scalar_subquery()
        stmt = stmt.where(AuditLog.created_at <= anchor, or_(AuditLog.created_at < anchor, AuditLog.id < after_id))
    return list(await session.scalars(stmt))


# -- Export batches -----------------------------------------------------------------------------

ORDER_COLUMNS = (
    Order.id,
    Order.order_no,
    Order.user_id,
    Order.sku,
    Order.name,
    Order.channel,
    Order.status,
    Order.amount_fen,
    Order.refunded_fen,
    Order.created_at,
    Order.paid_at,
    Order.transaction_id,
)
LEDGER_COLUMNS = (
    LedgerEntry.id,
    LedgerEntry.user_id,
    LedgerEntry.kind,
    LedgerEntry.amount,
    LedgerEntry.hold_delta,
    LedgerEntry.balance_after,
    LedgerEntry.held_after,
    LedgerEntry.ref,
    LedgerEntry.note,
    LedgerEntry.actor_id,
    LedgerEntry.created_at,
)


@dataclass(frozen=True, slots=True)
class ExportSource:
    """A table exported by creation time, its rows as the tuples of ``columns`` (``id`` first)."""

    model: Any
    columns: tuple[Any, ...]


ORDERS = ExportSource(Order, ORDER_COLUMNS)
LEDGER = ExportSource(LedgerEntry, LEDGER_COLUMNS)


def _in_range(stmt: Select[Any], source: ExportSource, since: datetime, until: datetime) -> Select[Any]:
    created = source.model.created_at
    return stmt.where(created >= since, created <= until)


async def id_bounds(
    session: AsyncSession, source: ExportSource, since: datetime, until: datetime
) -> tuple[int, int] | None:
    """The first and last id created in the range (from the created_at index), or None if none was:
    the batches then walk the primary key between them only, not the table's older rows."""
    stmt = _in_range(select(func.min(source.model.id), func.max(source.model.id)), source, since, until)
    low, high = (await session.execute(stmt)).one()
    return None if low is None else (int(low), int(high))


async def export_batch(
    session: AsyncSession,
    source: ExportSource,
    since: datetime,
    until: datetime,
    *,
    after_id: int,
    last_id: int,
    limit: int,
) -> list[Row[Any]]:
    """The next ``limit`` rows of the range after ``after_id``, by id, as plain tuples."""
    model = source.model
    stmt = select(*source.columns).where(model.id > after_id, model.id <= last_id).order_by(model.id).limit(limit)
    return list((await session.execute(_in_range(stmt, source, since, until))).all())
