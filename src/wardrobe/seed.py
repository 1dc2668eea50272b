"""Demo data for the embedded mode: an operator account and a full invite-code pool."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.logging import get_logger, mask_phone
from wardrobe.modules.admin import service as admin_service
from wardrobe.modules.users import invite_codes
from wardrobe.modules.users import repository as users_repo
from wardrobe.settings import Settings

log = get_logger("wardrobe.seed")


async def seed_demo_data(session: AsyncSession, settings: Settings) -> bool:
    """Idempotent: creates what is missing, touches nothing that exists. True if it created."""
    await invite_codes.refill_pool(session, settings.invite_pool_target, settings.invite_code_length)
    phone = settings.demo_operator_phone
    if await users_repo.get_by_phone(session, phone) is not None:
        return False
    await admin_service.create_user(
        session,
        actor_id=None,
        phone=phone,
        password=settings.demo_operator_password.get_secret_value(),
        role="operator",
        invite_code_length=settings.invite_code_length,
    )
    log.info("demo_operator_created", phone=mask_phone(phone))
    return True
