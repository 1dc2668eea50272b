"""The end of a membership: the account stops being a member, and the membership's unspent quota
expires through the ledger.

**What expires.** A membership *term* starts when a membership is bought while none is active
(``membership_started_at``) and runs through every renewal bought before it ends. At its end:

- *granted* — the quota of the user's membership orders fulfilled during the term
  (``started_at <= fulfilled_at < expires_at``), less what refunds already took back;
- *spent* — what the user's tasks were charged (``confirm`` ledger rows) since the term started.
  Spending draws on the membership's quota first, which is the reading kindest to the user: quota
  from packs, grants and rewards never expires;
- *expired* = ``min(max(granted - spent, 0), balance - held)``: never what open tasks hold, never
  below zero.

The ledger row (kind ``expire``, ref ``expire:{user_id}:{expires_at ISO}``, its note saying
granted, spent and expired) is written even when nothing expires, in the transaction that clears
the membership. A membership granted without a start (before plans had terms) ends with nothing
expired.

**Exactly once.** The conditional UPDATE that clears the membership *ending at that instant* is
the claim: however many schedulers or payment fulfilments race, one matches and the others find
nothing to do; the ledger's unique ``(kind, ref)`` backs it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import QuotaAccount
from wardrobe.modules.billing import quota, repository


@dataclass(frozen=True, slots=True)
class Ended:
    user_id: int
    sku: str | None
    granted: int
    spent: int
    expired: int


def expiry_ref(user_id: int, expires_at: datetime) -> str:
    return f"expire:{user_id}:{expires_at.isoformat()}"


async def end_membership(session: AsyncSession, user_id: int, expires_at: datetime) -> Ended | None:
    """End the user's membership that ends at ``expires_at`` and expire its unspent quota, in the
    caller's transaction. None if that membership is no longer there (ended already, or renewed)."""
    row = (
        await session.execute(
            select(QuotaAccount.membership_sku, QuotaAccount.membership_started_at).where(
                QuotaAccount.user_id == user_id, QuotaAccount.membership_expires_at == expires_at
            )
        )
    ).first()
    if row is None or not await repository.end_membership_if_unchanged(session, user_id, expires_at):
        return None
    # From here the account row is ours until commit (the row lock on MariaDB, the write lock on
    # SQLite): no charge can land between what we count and what we take.
    granted = spent = 0
    if row.membership_started_at is not None:
        granted = await repository.membership_granted(session, user_id, row.membership_started_at, expires_at)
        spent = await repository.spent_since(session, user_id, row.membership_started_at)
    available = (await quota.get_balance(session, user_id)).available
    expired = max(0, min(granted - spent, available))
    note = f"membership {row.membership_sku} ended: granted {granted}, spent {spent}, expired {expired}"
    await quota.expire(session, user_id, expired, ref=expiry_ref(user_id, expires_at), note=note)
    return Ended(user_id, row.membership_sku, granted, spent, expired)
