"""HTTP route of /api/v1/admin/audit-logs: who did what to which record, and why."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from wardrobe.core.deps import SessionDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.pagination import CursorQuery, decode_cursor
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import Principal, require
from wardrobe.core.schemas import Id
from wardrobe.modules.admin import reads
from wardrobe.modules.admin.ranges import FromInstant, ToInstant, instant
from wardrobe.modules.admin.repository import AuditFilter
from wardrobe.modules.admin.schemas import AuditPage

router = APIRouter()
AuditReader = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]


@router.get(
    "/audit-logs",
    summary="The audit log, newest first (keyset pagination)",
    description="Every staff action with its reason and what it changed (`before`/`after`: only the "
    "fields the action changed). Filters are exact matches; `from`/`to` bound the time, both inclusive.",
    response_model=Envelope[AuditPage],
    responses=errors(*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED),
)
async def audit_logs(
    _: AuditReader,
    session: SessionDep,
    since: FromInstant = None,
    until: ToInstant = None,
    actor_id: Annotated[Id | None, Query(description="Only actions of this staff member")] = None,
    action: Annotated[str | None, Query(max_length=64, examples=["user.ban"])] = None,
    target_type: Annotated[str | None, Query(max_length=32, examples=["user"])] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
) -> OrjsonResponse:
    after_id = decode_cursor(cursor) if cursor else None
    found = AuditFilter(
        actor_id=actor_id,
        action=action or None,
        target_type=target_type or None,
        target_id=target_id or None,
        since=instant(since, "from", end_of_day=False),
        until=instant(until, "to", end_of_day=True),
    )
    return ok(await reads.audit_page(session, found, limit=limit, after_id=after_id))
