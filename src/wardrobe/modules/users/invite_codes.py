"""Invite codes: short Crockford base32 codes from a CSPRNG, unique, never an endless loop."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import InviteCodePool, User

# Crockford's alphabet drops I, L, O and U: nothing to misread when a code is typed from a poster.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})
MAX_ATTEMPTS = 32


class InviteCodeSpaceExhausted(RuntimeError):
    """No free code was found within the bounded number of draws."""


def random_code(length: int, choice: Callable[[str], str] = secrets.choice) -> str:
    return "".join(choice(ALPHABET) for _ in range(length))


def normalize_code(raw: str) -> str:
    """What a person typed → the canonical code (case, hyphens, spaces and look-alikes folded)."""
    return raw.strip().upper().replace("-", "").replace(" ", "").translate(_READ_AS)


def pick_free_code(
    taken: Collection[str],
    length: int,
    max_attempts: int = MAX_ATTEMPTS,
    choice: Callable[[str], str] = secrets.choice,
) -> str:
    """Draw random codes until one is free, at most ``max_attempts`` times; then give up loudly.

    A full or nearly full space therefore ends in an exception, never in a spin.
    """
    for _ in range(max_attempts):
        code = random_code(length, choice)
        if code not in taken:
            return code
    raise InviteCodeSpaceExhausted(f"no free invite code of length {length} in {max_attempts} draws")


async def _taken_among(session: AsyncSession, candidates: list[str]) -> set[str]:
    in_users = await session.scalars(select(User.invite_code).where(User.invite_code.in_(candidates)))
    in_pool = await session.scalars(select(InviteCodePool.code).where(InviteCodePool.code.in_(candidates)))
    return set(in_users) | set(in_pool)


async def generate_unique_codes(session: AsyncSession, count: int, length: int) -> list[str]:
    """``count`` codes unused in the database, checked in one batch per round, bounded rounds."""
    found: list[str] = []
    for _ in range(MAX_ATTEMPTS):
        if len(found) >= count:
            break
        want = count - len(found)
        candidates = list({random_code(length) for _ in range(want * 2)} - set(found))
        taken = await _taken_among(session, candidates)
        found.extend(c for c in candidates if c not in taken)
    if len(found) < count:
        raise InviteCodeSpaceExhausted(f"found {len(found)} of {count} free invite codes")
    return found[:count]


async def claim_invite_code(session: AsyncSession, length: int) -> str:
    """Take a code from the pool (skipping rows other transactions hold), else make one now."""
    for _ in range(3):
        code = await session.scalar(select(InviteCodePool.code).limit(1).with_for_update(skip_locked=True))
        if code is None:
            break
        result = await session.execute(delete(InviteCodePool).where(InviteCodePool.code == code))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return code
    return (await generate_unique_codes(session, 1, length))[0]


async def refill_pool(session: AsyncSession, target: int, length: int) -> int:
    """Top the pool up to ``target`` codes; returns how many were added."""
    have = int(await session.scalar(select(func.count()).select_from(InviteCodePool)) or 0)
    missing = target - have
    if missing <= 0:
        return 0
    codes = await generate_unique_codes(session, missing, length)
    session.add_all([InviteCodePool(code=c) for c in codes])
    await session.flush()
    return len(codes)
