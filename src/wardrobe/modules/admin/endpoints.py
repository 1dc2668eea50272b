"""HTTP routes of /api/v1/admin/users (operators read, admins change)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from wardrobe.core.deps import SessionDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.pagination import CursorQuery, decode_cursor, split_page
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import Principal, require
from wardrobe.core.schemas import Id
from wardrobe.modules.admin import service
from wardrobe.modules.admin.schemas import (
    AdminUserCreate,
    AdminUserOut,
    AdminUserPage,
    AdminUserUpdate,
    Reason,
    RoleName,
    SessionsRevoked,
)
from wardrobe.modules.auth.phone import MAX_PHONE_LENGTH, PHONE_PATTERN, normalize_phone
from wardrobe.modules.users import repository as users_repo
from wardrobe.modules.users.schemas import UserOut
from wardrobe.modules.users.service import SignupPolicy

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Reader = Annotated[Principal, Depends(require(Permission.USERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.USERS_WRITE))]
Banner = Annotated[Principal, Depends(require(Permission.USERS_BAN))]
Revoker = Annotated[Principal, Depends(require(Permission.SESSIONS_REVOKE))]
DENIED = (*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED)


def _admin_body(user: object) -> dict[str, object]:
    base = UserOut.of(user).model_dump(mode="json")  # type: ignore[arg-type]
    base["status"] = user.status  # type: ignore[attr-defined]
    base["referrer_id"] = user.referrer_id  # type: ignore[attr-defined]
    return base


@router.get(
    "/users",
    summary="List users, newest first (keyset pagination)",
    response_model=Envelope[AdminUserPage],
    responses=errors(*DENIED),
)
async def list_users(
    _: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
    phone: Annotated[
        str | None,
        Query(
            max_length=MAX_PHONE_LENGTH,
            description="Only this phone's account; empty for all",
            json_schema_extra={"pattern": f"^(?:{PHONE_PATTERN[1:-1]})?$"},
        ),
    ] = None,
    role: RoleName | None = None,
) -> OrjsonResponse:
    before_id = decode_cursor(cursor) if cursor else None
    phone_norm = None
    if phone:
        try:
            phone_norm = normalize_phone(phone)
        except ValueError as exc:
            from wardrobe.core.errors import ValidationFailed

            raise ValidationFailed("phone", str(exc)) from exc
    users = await users_repo.list_users(session, limit=limit + 1, before_id=before_id, phone=phone_norm, role=role)
    page, next_cursor = split_page(users, limit, lambda u: u.id)
    return ok({"items": [_admin_body(u) for u in page], "next_cursor": next_cursor})


@router.post(
    "/users",
    summary="Create a user with a password and a role",
    status_code=201,
    response_model=Envelope[AdminUserOut],
    responses=errors(*DENIED, ErrorCode.CONFLICT),
)
async def create_user(
    body: AdminUserCreate, actor: Writer, settings: SettingsDep, session: SessionDep
) -> OrjsonResponse:
    user = await service.create_user(
        session,
        actor_id=actor.id,
        phone=body.phone,
        password=body.password,
        role=body.role,
        policy=SignupPolicy.of(settings),
    )
    return ok(_admin_body(user), status_code=201)


@router.patch(
    "/users/{user_id}",
    summary="Ban or unban a user (operators), or change a role (admins only)",
    description="`status: disabled` bans: every session ends and every socket drops at once. "
    "Changing `role` needs `users:write`; an operator asking for it gets `PERMISSION_DENIED`.",
    response_model=Envelope[AdminUserOut],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND, ErrorCode.CONFLICT),
)
async def update_user(user_id: Id, body: AdminUserUpdate, actor: Banner, session: SessionDep) -> OrjsonResponse:
    user = await service.update_user(
        session,
        actor_id=actor.id,
        user_id=user_id,
        role=body.role,
        status=body.status,
        reason=body.reason,
        may_change_role=actor.can(Permission.USERS_WRITE),
    )
    return ok(_admin_body(user))


@router.post(
    "/users/{user_id}/revoke-sessions",
    summary="Revoke every session of a user at once",
    response_model=Envelope[SessionsRevoked],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def revoke_sessions(user_id: Id, body: Reason, actor: Revoker, session: SessionDep) -> OrjsonResponse:
    revoked = await service.revoke_sessions(session, actor_id=actor.id, user_id=user_id, reason=body.reason)
    return ok({"sessions_revoked": revoked})
