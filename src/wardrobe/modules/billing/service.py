"""Billing rules around the quota core: sign-up grants, referral rewards, admin adjustments, and
the memberships users hold (what they unlock)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.audit import add_audit
from wardrobe.core.cache import Cache
from wardrobe.core.db import after_commit
from wardrobe.core.errors import NotFound
from wardrobe.models import LedgerKind, QuotaAccount, Referral, User
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import quota
from wardrobe.modules.billing.plans import cached_plan


async def on_user_created(session: AsyncSession, user_id: int, *, free_grant: int) -> None:
    """Open the account and make the sign-up grant, in the transaction that creates the user."""
    await quota.open_account(session, user_id)
    if free_grant > 0:
        await quota.credit(session, user_id, free_grant, kind=LedgerKind.GRANT, ref=f"signup:{user_id}")


async def reward_referral(session: AsyncSession, referral: Referral, *, amount: int) -> bool:
    """Credit the referrer once per referral; the referral row records that it was paid."""
    if amount <= 0:
        return False
    credited = await quota.credit(
        session, referral.referrer_id, amount, kind=LedgerKind.REFERRAL_REWARD, ref=f"referral:{referral.id}"
    )
    if credited:
        await session.execute(
            update(Referral).where(Referral.id == referral.id).values(reward_status="rewarded", rewarded_at=utcnow())
        )
    return credited


async def adjust(session: AsyncSession, *, actor_id: int, user_id: int, delta: int, reason: str) -> quota.Balance:
    """Admin adjustment: needs a reason, is audited, and never takes more than is available."""
    if await session.get(User, user_id) is None:
        raise NotFound()
    ref = f"admin:{uuid.uuid4().hex}"
    was = await quota.get_balance(session, user_id)
    await quota.credit(
        session, user_id, delta, kind=LedgerKind.ADMIN_ADJUSTMENT, ref=ref, note=reason, actor_id=actor_id
    )
    add_audit(
        session,
        actor_id=actor_id,
        action="quota.adjust",
        target_type="user",
        target_id=str(user_id),
        reason=reason,
        before={"balance": was.balance},
        after={"balance": was.balance + delta, "delta": delta, "ledger_ref": ref},
    )
    await session.flush()
    return await quota.get_balance(session, user_id)


MEMBERSHIP = "membership"


@dataclass(frozen=True, slots=True)
class MembershipRef:
    """An active membership: its plan, its end, and what the plan unlocks (its ``tier`` and the
    ``features`` it lists), read from the plan as it is now."""

    sku: str
    expires_at: datetime
    tier: str | None = None
    features: frozenset[str] = frozenset()

    def unlocks(self, feature_key: str, plan_required: frozenset[str]) -> bool:
        """Whether this membership opens a feature gated by ``plan_required`` (SKUs or tiers): its
        SKU or its tier is listed there, or its plan lists the feature's key."""
        return (
            self.sku in plan_required
            or (self.tier is not None and self.tier in plan_required)
            or feature_key in self.features
        )


async def cached_membership(session: AsyncSession, cache: Cache, user_id: int) -> MembershipRef | None:
    """The user's membership if active now (cached; ``membership_changed`` when it is granted,
    extended or ended; the plan's tier and features come from the plans' cache, which every plan
    edit drops). Expiry is checked on every read, so a cached membership ends on time."""

    async def load() -> MembershipRef | None:
        row = (
            await session.execute(
                select(QuotaAccount.membership_sku, QuotaAccount.membership_expires_at).where(
                    QuotaAccount.user_id == user_id
                )
            )
        ).first()
        if row is None or row.membership_sku is None or row.membership_expires_at is None:
            return None
        return MembershipRef(row.membership_sku, row.membership_expires_at)

    held = await cache.get(MEMBERSHIP, str(user_id), load)
    if held is None or held.expires_at <= utcnow():
        return None
    plan = await cached_plan(session, cache, held.sku)
    if plan is None:
        return held
    return MembershipRef(held.sku, held.expires_at, plan.tier, plan.features)


def membership_changed(session: AsyncSession, cache: Cache, user_id: int) -> None:
    after_commit(session, lambda: cache.invalidate(MEMBERSHIP, str(user_id)))
