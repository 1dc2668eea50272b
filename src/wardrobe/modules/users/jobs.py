"""Periodic work of the users module (run by ``worker/scheduler.py``, and in the API process in
embedded mode)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.modules.users import invite_codes


async def refill_invite_pool(session_factory: async_sessionmaker[AsyncSession], target: int, code_length: int) -> int:
    """Top the pool of invite codes up to ``target``; returns how many were added."""
    async with unit_of_work(session_factory) as session:
        return await invite_codes.refill_pool(session, target, code_length)
