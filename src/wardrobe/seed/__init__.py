"""Demo data for the embedded mode: an operator account and a full invite-code pool."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.logging import get_logger, mask_phone
from wardrobe.models import Plan, PlanKind
from wardrobe.modules.admin import service as admin_service
from wardrobe.modules.providers.base import ProviderRegistry
from wardrobe.modules.users import invite_codes
from wardrobe.modules.users import repository as users_repo
from wardrobe.modules.users.service import SignupPolicy
from wardrobe.seed.demo_catalog import seed_demo_catalog
from wardrobe.settings import Settings

log = get_logger("wardrobe.seed")


# (sku, kind, name, price in fen, quota, period in days)
DEMO_PLANS: tuple[tuple[str, PlanKind, str, int, int, int | None], ...] = (
    ("member-monthly", PlanKind.MEMBERSHIP, "月度会员", 2990, 300, 30),
    ("member-yearly", PlanKind.MEMBERSHIP, "年度会员", 29900, 4000, 365),
    ("pack-100", PlanKind.QUOTA_PACK, "100 次加油包", 990, 100, None),
    ("pack-500", PlanKind.QUOTA_PACK, "500 次加油包", 3990, 500, None),
)


async def seed_plans(session: AsyncSession) -> int:
    existing = set(await session.scalars(select(Plan.sku)))
    missing = [spec for spec in DEMO_PLANS if spec[0] not in existing]
    for order, (sku, kind, name, price_fen, quota, period_days) in enumerate(DEMO_PLANS, start=1):
        if sku not in existing:
            session.add(
                Plan(
                    sku=sku,
                    kind=kind.value,
                    name=name,
                    price_fen=price_fen,
                    quota=quota,
                    period_days=period_days,
                    sort_order=order * 10,
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
