"""Quota accounting: every change is a conditional update plus a ledger row, in the
caller's transaction, so money and its record commit together or not at all.

No check-then-act in Python: the database decides. A reserve is
``UPDATE … SET held = held + c WHERE balance - held >= c``; a settlement first flips the hold
``WHERE status = 'held'``. However many processes race, nothing is oversold and nothing is settled
twice. Settlements and credits are idempotent by their reference.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.db import after_commit
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.metrics import QUOTA_OPERATIONS, QUOTA_UNITS
from wardrobe.models import HoldStatus, LedgerEntry, LedgerKind, QuotaAccount, QuotaHold
from wardrobe.models.base import utcnow


@dataclass(frozen=True, slots=True)
class Balance:
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


class QuotaInsufficient(AppError):
    code = ErrorCode.QUOTA_INSUFFICIENT


async def open_account(session: AsyncSession, user_id: int) -> None:
    """Create the user's (empty) account; called once, when the user is created."""
    session.add(QuotaAccount(user_id=user_id, balance=0, held=0))
    await session.flush()


async def get_balance(session: AsyncSession, user_id: int) -> Balance:
    row = (
        await session.execute(select(QuotaAccount.balance, QuotaAccount.held).where(QuotaAccount.user_id == user_id))
    ).first()
    if row is None:
        return Balance(0, 0)
    return Balance(int(row.balance), int(row.held))


async def _record(
    session: AsyncSession,
    user_id: int,
    kind: LedgerKind,
    *,
    amount: int,
    hold_delta: int,
    ref: str,
    note: str | None = None,
    actor_id: int | None = None,
) -> None:
    """Append the ledger row of a change just made to the account, in the same transaction.

    One ``INSERT … SELECT`` that copies the balance and held amount from the account row, read
    after our own update: on MySQL the row is locked by it, on SQLite the whole database is, so
    these are exactly the values our change produced (one round trip, where reading them back
    first and then inserting took two)."""
    values: dict[str, Any] = {
        "user_id": user_id,
        "kind": kind.value,
        "amount": amount,
        "hold_delta": hold_delta,
        "ref": ref,
        "note": note,
        "actor_id": actor_id,
        "created_at": utcnow(),
    }
    columns = LedgerEntry.__table__.c
    constants = {name: literal(value, columns[name].type) for name, value in values.items() if name != "user_id"}
    copied = select(QuotaAccount.user_id, QuotaAccount.balance, QuotaAccount.held, *constants.values()).where(
        QuotaAccount.user_id == user_id
    )
    result = await session.execute(
        insert(LedgerEntry).from_select(["user_id", "balance_after", "held_after", *constants], copied)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        # No account row (nothing above could have changed one): the record still says so, at 0.
        await session.execute(insert(LedgerEntry).values(**values, balance_after=0, held_after=0))
    operation = _OPERATION_OF[kind]
    units = max(abs(amount), abs(hold_delta))
    after_commit(session, functools.partial(_count, operation, units))


# The ledger's kinds as the quota metrics name them: what the operation did to the account.
_OPERATION_OF = {
    LedgerKind.RESERVE: "reserve",
    LedgerKind.CONFIRM: "confirm",
    LedgerKind.CANCEL: "cancel",
    LedgerKind.EXPIRE: "expire",
    LedgerKind.GRANT: "grant",
    LedgerKind.PURCHASE: "grant",
    LedgerKind.REFERRAL_REWARD: "grant",
    LedgerKind.REFERRAL_REBATE: "grant",
    LedgerKind.ADMIN_ADJUSTMENT: "adjust",
    LedgerKind.REFUND_CLAWBACK: "adjust",
}


def _count(operation: str, units: int) -> None:
    """Counted once the entry committed (a rolled-back reserve moved nothing)."""
    QUOTA_OPERATIONS.labels(operation).inc()
    QUOTA_UNITS.labels(operation).inc(units)


async def _already_recorded(session: AsyncSession, kind: LedgerKind, ref: str) -> bool:
    found = await session.scalar(select(LedgerEntry.id).where(LedgerEntry.kind == kind.value, LedgerEntry.ref == ref))
    return found is not None


async def credit(
    session: AsyncSession,
    user_id: int,
    amount: int,
    *,
    kind: LedgerKind,
    ref: str,
    note: str | None = None,
    actor_id: int | None = None,
) -> bool:
    """Add (or, for admin adjustments, remove) quota. Idempotent by ``(kind, ref)``: returns False
    if this credit was already made. A removal never takes more than is available."""
    if amount == 0:
        raise AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": "delta", "message": "must not be 0"}])
    if await _already_recorded(session, kind, ref):
        return False
    stmt = update(QuotaAccount).where(QuotaAccount.user_id == user_id)
    if amount < 0:
        stmt = stmt.where(QuotaAccount.balance - QuotaAccount.held >= -amount)
    result = await session.execute(stmt.values(balance=QuotaAccount.balance + amount, updated_at=utcnow()))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise QuotaInsufficient(detail=f"cannot remove {-amount}")
    try:
        async with session.begin_nested():
            await _record(session, user_id, kind, amount=amount, hold_delta=0, ref=ref, note=note, actor_id=actor_id)
    except IntegrityError:
        # A concurrent credit with the same reference won; undo ours (same transaction).
        await session.execute(
            update(QuotaAccount).where(QuotaAccount.user_id == user_id).values(balance=QuotaAccount.balance - amount)
        )
        return False
    return True


async def expire(session: AsyncSession, user_id: int, amount: int, *, ref: str, note: str) -> bool:
    """Take ``amount`` (0 or more) of the user's quota away because what granted it ended, with an
    ``expire`` ledger row even for 0 (the record that it ended). Never more than is available
    (QUOTA_INSUFFICIENT, nothing changed); idempotent by ``ref``: False if already recorded."""
    if amount < 0:
        raise ValueError("an expiry takes, it never gives")
    if await _already_recorded(session, LedgerKind.EXPIRE, ref):
        return False
    if amount > 0:
        result = await session.execute(
            update(QuotaAccount)
            .where(QuotaAccount.user_id == user_id, QuotaAccount.balance - QuotaAccount.held >= amount)
            .values(balance=QuotaAccount.balance - amount, updated_at=utcnow())
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise QuotaInsufficient(detail=f"cannot expire {amount}")
    # A concurrent expiry with the same ref fails here on the unique key, and its whole
    # transaction (the caller's) rolls back: callers claim the work first (memberships.py).
    await _record(session, user_id, LedgerKind.EXPIRE, amount=-amount, hold_delta=0, ref=ref, note=note)
    return True


async def reserve(
    session: AsyncSession, user_id: int, amount: int, *, ref: str, ttl: timedelta, fresh: bool = False
) -> QuotaHold:
    """Hold ``amount`` for the task ``ref``. Raises QUOTA_INSUFFICIENT, with nothing held, when the
    available quota is short. The same ``ref`` twice returns the existing hold.

    ``fresh``: the ref names a row this transaction just created (a new task), so no hold can
    exist for it; the lookup and the savepoint that handle a second reserve are skipped, and a
    duplicate would fail the whole transaction on the unique key instead."""
    if amount <= 0:
        raise ValueError("a hold must be positive")
    if not fresh:
        existing = await session.scalar(select(QuotaHold).where(QuotaHold.ref == ref))
        if existing is not None:
            return existing
    result = await session.execute(
        update(QuotaAccount)
        .where(QuotaAccount.user_id == user_id, QuotaAccount.balance - QuotaAccount.held >= amount)
        .values(held=QuotaAccount.held + amount, updated_at=utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise QuotaInsufficient(detail=f"user {user_id} cannot hold {amount}")
    hold = QuotaHold(user_id=user_id, ref=ref, amount=amount, expires_at=utcnow() + ttl)
    if fresh:
        session.add(hold)
        await session.flush()
        await _record(session, user_id, LedgerKind.RESERVE, amount=0, hold_delta=amount, ref=ref)
        return hold
    try:
        async with session.begin_nested():
            session.add(hold)
            await session.flush()
    except IntegrityError:
        # The same ref reserved concurrently and committed first: give our units back, use theirs.
        await session.execute(
            update(QuotaAccount).where(QuotaAccount.user_id == user_id).values(held=QuotaAccount.held - amount)
        )
        winner = await session.scalar(select(QuotaHold).where(QuotaHold.ref == ref))
        if winner is None:
            raise
        return winner
    await _record(session, user_id, LedgerKind.RESERVE, amount=0, hold_delta=amount, ref=ref)
    return hold


@dataclass(frozen=True, slots=True)
class _Settled:
    user_id: int
    amount: int


async def _settle(session: AsyncSession, ref: str, to: HoldStatus, now: datetime) -> _Settled | None:
    """Flip the hold of ``ref`` from held to ``to``; what it held, or None if it was not held."""
    row = (
        await session.execute(
            select(QuotaHold.id, QuotaHold.user_id, QuotaHold.amount).where(
                QuotaHold.ref == ref, QuotaHold.status == HoldStatus.HELD.value
            )
        )
    ).first()
    if row is None:
        return None
    flipped = await session.execute(
        update(QuotaHold)
        .where(QuotaHold.id == row.id, QuotaHold.status == HoldStatus.HELD.value)
        .values(status=to.value, settled_at=now)
        .execution_options(synchronize_session=False)
    )
    if flipped.rowcount != 1:  # type: ignore[attr-defined]
        return None  # settled by a concurrent caller between the two statements
    return _Settled(int(row.user_id), int(row.amount))


async def confirm(session: AsyncSession, ref: str, *, kind: LedgerKind = LedgerKind.CONFIRM) -> bool:
    """Charge the held quota for ``ref``. Exactly once: False if already settled or never held."""
    hold = await _settle(session, ref, HoldStatus.CONFIRMED, utcnow())
    if hold is None:
        return False
    await session.execute(
        update(QuotaAccount)
        .where(QuotaAccount.user_id == hold.user_id)
        .values(
            balance=QuotaAccount.balance - hold.amount,
            held=QuotaAccount.held - hold.amount,
            updated_at=utcnow(),
        )
    )
    await _record(session, hold.user_id, kind, amount=-hold.amount, hold_delta=-hold.amount, ref=ref)
    return True


async def cancel(session: AsyncSession, ref: str, *, kind: LedgerKind = LedgerKind.CANCEL) -> bool:
    """Release the hold for ``ref`` (the refund). Exactly once: False if already settled."""
    hold = await _settle(session, ref, HoldStatus.CANCELED, utcnow())
    if hold is None:
        return False
    await session.execute(
        update(QuotaAccount)
        .where(QuotaAccount.user_id == hold.user_id)
        .values(held=QuotaAccount.held - hold.amount, updated_at=utcnow())
    )
    await _record(session, hold.user_id, kind, amount=0, hold_delta=-hold.amount, ref=ref)
    return True


async def expired_hold_refs(session: AsyncSession, now: datetime, limit: int = 500) -> list[str]:
    stmt = (
        select(QuotaHold.ref)
        .where(QuotaHold.status == HoldStatus.HELD.value, QuotaHold.expires_at < now)
        .order_by(QuotaHold.expires_at)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def ledger_page(session: AsyncSession, user_id: int, *, limit: int, before_id: int | None) -> list[LedgerEntry]:
    stmt = select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(LedgerEntry.id < before_id)
    return list(await session.scalars(stmt))
