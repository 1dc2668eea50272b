"""Demo data for the embedded mode: an operator account and a full invite-code pool."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.logging import get_logger, mask_phone
from wardrobe.demo_catalog import seed_demo_catalog
from wardrobe.models import Plan, PlanKind
from wardrobe.modules.admin import service as admin_service
from wardrobe.modules.providers.base import ProviderRegistry
from wardrobe.modules.users import invite_codes
from wardrobe.modules.users import repository as users_repo
from wardrobe.modules.users.service import SignupPolicy
from wardrobe.settings import Settings

log = get_logger("wardrobe.seed")


DEMO_PLANS = (
    Plan(
        sku="member-monthly",
        kind=PlanKind.MEMBERSHIP.value,
        name="月度会员",
        price_fen=2990,
        quota=300,
        period_days=30,
        sort_order=10,
    ),
    Plan(
        sku="member-yearly",
        kind=PlanKind.MEMBERSHIP.value,
        name="年度会员",
        price_fen=29900,
        quota=4000,
        period_days=365,
        sort_order=20,
    ),
    Plan(
        sku="pack-100",
        kind=PlanKind.QUOTA_PACK.value,
        name="100 次加油包",
        price_fen=990,
        quota=100,
        sort_order=30,
    ),
    Plan(
        sku="pack-500",
        kind=PlanKind.QUOTA_PACK.value,
        name="500 次加油包",
        price_fen=3990,
        quota=500,
        sort_order=40,
    ),
)


async def seed_plans(session: AsyncSession) -> int:
    existing = set(await session.scalars(select(Plan.sku)))
    missing = [p for p in DEMO_PLANS if p.sku not in existing]
    for plan in missing:
        session.add(
            Plan(
                **{
                    c: getattr(plan, c)
                    for c in ("sku", "kind", "name", "price_fen", "quota", "period_days", "sort_order")
                }
            )
        )
    await session.flush()
    return len(missing)


async def seed_demo_data(session: AsyncSession, settings: Settings, registry: ProviderRegistry) -> bool:
    """Idempotent: creates what is missing, touches nothing that exists. True if it created."""
    await invite_codes.refill_pool(session, settings.invite_pool_target, settings.invite_code_length)
    await seed_plans(session)
    await seed_demo_catalog(session, registry)
    phone = settings.demo_operator_phone
    if await users_repo.get_by_phone(session, phone) is not None:
        return False
    await admin_service.create_user(
        session,
        actor_id=None,
        phone=phone,
        password=settings.demo_operator_password.get_secret_value(),
        role="operator",
        policy=SignupPolicy.of(settings),
    )
    log.info("demo_operator_created", phone=mask_phone(phone))
    return True
