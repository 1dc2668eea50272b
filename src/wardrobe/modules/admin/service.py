"""Admin user management: create, change role or status, revoke sessions. Every change audited."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.audit import add_audit
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.security import hash_password
from wardrobe.models import Role, User, UserStatus
from wardrobe.modules.auth import tokens
from wardrobe.modules.users import repository as users_repo
from wardrobe.modules.users import service as users_service
from wardrobe.modules.users.service import SignupPolicy


async def create_user(
    session: AsyncSession,
    *,
    actor_id: int | None,
    phone: str,
    password: str,
    role: str,
    policy: SignupPolicy,
) -> User:
    """Create an account with a password (``wardrobe admin create-user`` and the admin API)."""
    if await users_repo.get_by_phone(session, phone) is not None:
        raise AppError(ErrorCode.CONFLICT, data=[{"field": "phone", "message": "already registered"}])
    user = await users_service.create_user(
        session,
        phone=phone,
        role=Role(role),
        password_hash=await hash_password(password),
        policy=policy,
    )
    if user is None:
        raise AppError(ErrorCode.CONFLICT, data=[{"field": "phone", "message": "already registered"}])
    add_audit(
        session,
        actor_id=actor_id,
        action="user.create",
        target_type="user",
        target_id=str(user.id),
        reason=None,
        after={"role": role},
    )
    await session.flush()
    return user


async def update_user(
    session: AsyncSession,
    *,
    actor_id: int,
    user_id: int,
    role: str | None,
    status: str | None,
    reason: str,
    may_change_role: bool,
) -> User:
    """Ban or unban (operators), or change a role (admins). A ban ends every session and socket."""
    user = await users_repo.get_by_id(session, user_id)
    if user is None:
        raise NotFound()
    if role not in (None, user.role) and not may_change_role:
        raise AppError(ErrorCode.PERMISSION_DENIED, detail="changing a role is an admin's")
    if user.status == UserStatus.DELETED.value:
        # An erased account stays erased: it is only a tombstone for its orders and ledger.
        raise AppError(ErrorCode.CONFLICT, data={"reason": "account_deleted"})
    if user.id == actor_id and (role not in (None, user.role) or status == UserStatus.DISABLED.value):
        raise AppError(ErrorCode.CONFLICT, detail="admins cannot demote or disable themselves")
    if role is not None and role != user.role:
        add_audit(
            session,
            actor_id=actor_id,
            action="user.role",
            target_type="user",
            target_id=str(user.id),
            reason=reason,
            before={"role": user.role},
            after={"role": role},
        )
        user.role = role
    if status is not None and status != user.status:
        add_audit(
            session,
            actor_id=actor_id,
            action="user.ban" if status == UserStatus.DISABLED.value else "user.unban",
            target_type="user",
            target_id=str(user.id),
            reason=reason,
            before={"status": user.status},
            after={"status": status},
        )
        user.status = status
        if status == UserStatus.DISABLED.value:
            await tokens.revoke_all(session, user.id, "account_disabled")
    await session.flush()
    return user


async def revoke_sessions(session: AsyncSession, *, actor_id: int, user_id: int, reason: str) -> int:
    if await users_repo.get_by_id(session, user_id) is None:
        raise NotFound()
    revoked = await tokens.revoke_all(session, user_id, "admin_revoke")
    add_audit(
        session,
        actor_id=actor_id,
        action="user.revoke_sessions",
        target_type="user",
        target_id=str(user_id),
        reason=reason,
    )
    await session.flush()
    return revoked
