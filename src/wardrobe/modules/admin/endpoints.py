"""HTTP routes of /api/v1/admin: users (operators read and ban, admins change roles), and the
routers of the audit log and the exports, included here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from wardrobe.core.deps import SessionDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode, ValidationFailed
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.pagination import CursorQuery, decode_cursor
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import Principal, require
from wardrobe.core.schemas import Id
from wardrobe.modules.admin import audit_endpoints, export_endpoints, reads, service
from wardrobe.modules.admin.repository import UserFilter
from wardrobe.modules.admin.schemas import (
    AdminLedgerPage,
    AdminUserCreate,
    AdminUserDetail,
    AdminUserOut,
    AdminUserPage,
    AdminUserUpdate,
    Reason,
    RoleName,
    SessionsRevoked,
    StatusName,
)
from wardrobe.modules.auth.phone import MAX_PHONE_LENGTH, PHONE_PATTERN, normalize_phone
from wardrobe.modules.users.invite_codes import normalize_code
from wardrobe.modules.users.service import SignupPolicy

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Reader = Annotated[Principal, Depends(require(Permission.USERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.USERS_WRITE))]
Banner = Annotated[Principal, Depends(require(Permission.USERS_BAN))]
Revoker = Annotated[Principal, Depends(require(Permission.SESSIONS_REVOKE))]
DENIED = (*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED)


def _phone(phone: str | None) -> str | None:
    if not phone:
        return None
    try:
        return normalize_phone(phone)
    except ValueError as exc:
        raise ValidationFailed("phone", str(exc)) from exc


@router.get(
    "/users",
    summary="Find users by exact phone, id, invite code, role or status, newest first (keyset pagination)",
    description="Every filter is an exact match (a phone is looked up whole, never by a part of it); "
    "phone numbers come back masked only.",
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
    user_id: Annotated[Id | None, Query(alias="id", description="Only the user with this id")] = None,
    invite_code: Annotated[
        str | None, Query(max_length=20, description="Only the owner of this invite code (case and hyphens ignored)")
    ] = None,
    role: RoleName | None = None,
    status: StatusName | None = None,
) -> OrjsonResponse:
    found = UserFilter(
        phone=_phone(phone),
        user_id=user_id,
        invite_code=normalize_code(invite_code) if invite_code else None,
        role=role,
        status=status,
    )
    before_id = decode_cursor(cursor) if cursor else None
    return ok(await reads.list_users(session, found, limit=limit, before_id=before_id))


@router.get(
    "/users/{user_id}",
    summary="Everything about one user: profile, quota, ledger, sessions, orders, tasks, distributor",
    description="The newest 20 ledger rows, sessions and orders and the newest 10 tasks; the phone is masked. "
    "Reading it is not audited.",
    response_model=Envelope[AdminUserDetail],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def user_detail(user_id: Id, _: Reader, session: SessionDep) -> OrjsonResponse:
    return ok(await reads.user_detail(session, user_id))


@router.get(
    "/users/{user_id}/ledger",
    summary="A user's quota ledger, newest first (keyset pagination)",
    response_model=Envelope[AdminLedgerPage],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def user_ledger(
    user_id: Id,
    _: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
) -> OrjsonResponse:
    before_id = decode_cursor(cursor) if cursor else None
    return ok(await reads.ledger_page(session, user_id, limit=limit, before_id=before_id))


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
    return ok(reads.user_row(user), status_code=201)


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
    return ok(reads.user_row(user))


@router.post(
    "/users/{user_id}/revoke-sessions",
    summary="Revoke every session of a user at once",
    response_model=Envelope[SessionsRevoked],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def revoke_sessions(user_id: Id, body: Reason, actor: Revoker, session: SessionDep) -> OrjsonResponse:
    revoked = await service.revoke_sessions(session, actor_id=actor.id, user_id=user_id, reason=body.reason)
    return ok({"sessions_revoked": revoked})


router.include_router(audit_endpoints.router)
router.include_router(export_endpoints.router)
