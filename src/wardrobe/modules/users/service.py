"""Account rules: creating users without duplicates, profiles, invite codes and referrers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.models import Referral, Role, User
from wardrobe.models.base import utcnow
from wardrobe.modules.billing import service as billing
from wardrobe.modules.users import invite_codes, repository
from wardrobe.modules.users.schemas import ProfileUpdate
from wardrobe.settings import Settings


@dataclass(frozen=True, slots=True)
class SignupPolicy:
    """What every new account gets: an invite code of this length, a free grant, and a reward
    for whoever referred it."""

    invite_code_length: int = 8
    free_grant: int = 0
    referral_reward: int = 0

    @classmethod
    def of(cls, settings: Settings) -> SignupPolicy:
        return cls(settings.invite_code_length, settings.free_grant_quota, settings.referral_reward_quota)


# A referrer may still be bound in the second registration step, for this long after sign-up.
REFERRER_BIND_WINDOW = timedelta(days=7)


async def find_referrer(session: AsyncSession, raw_code: str, registrant: User | None = None) -> User:
    """The active user owning ``raw_code``, other than the registrant."""
    code = invite_codes.normalize_code(raw_code)
    referrer = await repository.get_by_invite_code(session, code) if code else None
    if referrer is None or not referrer.is_active:
        raise AppError(ErrorCode.INVITE_CODE_INVALID, data=[{"field": "invite_code", "message": "unknown"}])
    if registrant is not None and (referrer.id == registrant.id or referrer.referrer_id == registrant.id):
        raise AppError(
            ErrorCode.INVITE_CODE_INVALID, data=[{"field": "invite_code", "message": "cannot refer yourself"}]
        )
    return referrer


async def _bind_referrer(session: AsyncSession, user: User, referrer: User, policy: SignupPolicy) -> None:
    user.referrer_id = referrer.id
    referral = Referral(referrer_id=referrer.id, referee_id=user.id, invite_code=referrer.invite_code)
    session.add(referral)
    await session.flush()
    await billing.reward_referral(session, referral, amount=policy.referral_reward)


async def create_user(
    session: AsyncSession,
    *,
    policy: SignupPolicy,
    phone: str | None = None,
    openid: str | None = None,
    unionid: str | None = None,
    role: Role = Role.USER,
    password_hash: str | None = None,
    referrer: User | None = None,
) -> User | None:
    """Insert a user inside a savepoint. Returns None when a concurrent insert won the unique
    phone/openid race, so the caller can load that user instead."""
    code = await invite_codes.claim_invite_code(session, policy.invite_code_length)
    user = User(
        phone=phone,
        wechat_openid=openid,
        wechat_unionid=unionid,
        role=role.value,
        password_hash=password_hash,
        invite_code=code,
        password_changed_at=utcnow() if password_hash else None,
    )
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
    except IntegrityError:
        return None
    await billing.on_user_created(session, user.id, free_grant=policy.free_grant)
    if referrer is not None:
        await _bind_referrer(session, user, referrer, policy)
    return user


async def get_or_create_by_phone(
    session: AsyncSession, phone: str, *, policy: SignupPolicy, referrer: User | None = None
) -> tuple[User, bool]:
    """The user owning ``phone``, created if absent; concurrent first logins create one user."""
    for _ in range(3):
        user = await repository.get_by_phone(session, phone)
        if user is not None:
            return user, False
        created = await create_user(session, phone=phone, policy=policy, referrer=referrer)
        if created is not None:
            return created, True
    raise AppError(ErrorCode.CONFLICT, detail="phone insert kept conflicting")


async def update_profile(session: AsyncSession, user: User, update: ProfileUpdate) -> User:
    """Apply the fields the client sent; a nickname completes registration's second step."""
    changes = update.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if key == "avatar_url" and value is not None:
            value = str(value)
        if key == "nickname" and value is None:
            raise AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": "nickname", "message": "cannot be null"}])
        if key == "gender" and value is None:
            value = "unknown"
        setattr(user, key, value)
    if user.nickname:
        user.profile_completed = True
    await session.flush()
    return user


async def bind_referrer_later(session: AsyncSession, user: User, raw_code: str, policy: SignupPolicy) -> User:
    """Second-step referrer binding: once, immutable, only shortly after sign-up."""
    if user.referrer_id is not None:
        raise AppError(ErrorCode.REFERRER_ALREADY_BOUND)
    if utcnow() - user.created_at > REFERRER_BIND_WINDOW:
        raise AppError(
            ErrorCode.INVITE_CODE_INVALID,
            data=[{"field": "invite_code", "message": "the referrer can only be set within 7 days of sign-up"}],
        )
    referrer = await find_referrer(session, raw_code, registrant=user)
    await _bind_referrer(session, user, referrer, policy)
    return user


async def set_phone(session: AsyncSession, user: User, phone: str) -> User:
    """Bind ``phone`` to ``user``. A phone owned by another account is refused: the
    person should log in to that account by SMS; accounts are never merged silently."""
    owner = await repository.get_by_phone(session, phone)
    if owner is not None and owner.id != user.id:
        raise AppError(ErrorCode.PHONE_ALREADY_BOUND)
    if owner is None:
        user.phone = phone
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError as exc:
            raise AppError(ErrorCode.PHONE_ALREADY_BOUND) from exc
    return user
