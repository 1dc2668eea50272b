"""HTTP routes of distributors: users apply and see their application; operators review; admins
(``distributors:reveal``) may decrypt an ID number, with a reason, audited. Responses carry only
the masked number, except the reveal answer itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from wardrobe.core.db import unit_of_work
from wardrobe.core.deps import SessionDep, SessionFactoryDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.pagination import CursorQuery, decode_cursor, split_page
from wardrobe.core.permissions import Permission, roles_with
from wardrobe.core.principal import CurrentUser, Principal, check_second_factor, require
from wardrobe.core.schemas import Id
from wardrobe.models import Role
from wardrobe.modules.crypto.deps import CipherDep
from wardrobe.modules.distributors import service
from wardrobe.modules.distributors.schemas import (
    ApplicationCreate,
    ApplicationOut,
    ApplicationPage,
    Approval,
    MyDistributorStatus,
    Rejection,
    RevealedIdNumber,
    RevealRequest,
    StatusName,
)

router = APIRouter(tags=["distributors"])
log = get_logger("wardrobe.distributors")

Reviewer = Annotated[Principal, Depends(require(Permission.DISTRIBUTORS_REVIEW))]
DENIED = (*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED)


async def _revealer(
    request: Request, principal: CurrentUser, sessions: SessionFactoryDep, settings: SettingsDep
) -> Principal:
    """Admits holders of ``distributors:reveal``. A refusal is audited in a transaction of its own
    (the request's rolls back with the 403), with the reason the caller gave if any."""
    if principal.can(Permission.DISTRIBUTORS_REVEAL):
        check_second_factor(principal, settings, Permission.DISTRIBUTORS_REVEAL)
        return principal
    reason: str | None = None
    try:
        body = await request.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("reason"), str):
        reason = body["reason"]
    application_id = str(request.path_params.get("application_id", ""))
    async with unit_of_work(sessions) as session:
        service.record_refused_reveal(session, application_id=application_id, actor_id=principal.id, reason=reason)
    log.warning("id_number_reveal_refused", application_id=application_id, role=principal.user.role)
    raise AppError(ErrorCode.PERMISSION_DENIED)


# Documented like require(): core/contract.py reads it into the operation's x-permission.
setattr(_revealer, "permission", Permission.DISTRIBUTORS_REVEAL.value)  # noqa: B010 - a function attribute
setattr(_revealer, "roles", roles_with(Permission.DISTRIBUTORS_REVEAL))  # noqa: B010 - a function attribute
Revealer = Annotated[Principal, Depends(_revealer)]


@router.post(
    "/api/v1/distributors/applications",
    summary="Apply to become a distributor (the ID number is stored encrypted; answers show it masked)",
    status_code=201,
    response_model=Envelope[ApplicationOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.CONFLICT, ErrorCode.DEPENDENCY_UNAVAILABLE),
)
async def apply(body: ApplicationCreate, user: CurrentUser, session: SessionDep, cipher: CipherDep) -> OrjsonResponse:
    row = await service.apply(session, cipher, user_id=user.id, body=body)
    log.info("distributor_application_created", application_id=row.id, id_number=row.id_number_masked)
    return ok(ApplicationOut.of(row).model_dump(mode="json"), status_code=201)


@router.get(
    "/api/v1/distributors/me",
    summary="Whether I am a distributor, and my latest application (masked)",
    response_model=Envelope[MyDistributorStatus],
    responses=errors(*AUTH_ERRORS),
)
async def my_status(user: CurrentUser, session: SessionDep) -> OrjsonResponse:
    row = await service.latest_of(session, user.id)
    return ok(
        MyDistributorStatus(
            is_distributor=user.user.role == Role.DISTRIBUTOR.value,
            application=ApplicationOut.of(row) if row is not None else None,
        ).model_dump(mode="json")
    )


@router.get(
    "/api/v1/admin/distributors/applications",
    summary="Distributor applications, newest first (keyset pagination; ID numbers masked)",
    response_model=Envelope[ApplicationPage],
    responses=errors(*DENIED),
)
async def list_applications(
    _: Reviewer,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
    status: StatusName | None = None,
) -> OrjsonResponse:
    before_id = decode_cursor(cursor) if cursor else None
    rows = await service.list_applications(session, limit=limit + 1, before_id=before_id, status=status)
    page, next_cursor = split_page(rows, limit, lambda r: r.id)
    return ok({"items": [ApplicationOut.of(r).model_dump(mode="json") for r in page], "next_cursor": next_cursor})


@router.post(
    "/api/v1/admin/distributors/applications/{application_id}/approve",
    summary="Approve a pending application: the applicant becomes a distributor (audited)",
    response_model=Envelope[ApplicationOut],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND, ErrorCode.CONFLICT),
)
async def approve(application_id: Id, body: Approval, reviewer: Reviewer, session: SessionDep) -> OrjsonResponse:
    row = await service.approve(session, application_id=application_id, reviewer_id=reviewer.id, reason=body.reason)
    return ok(ApplicationOut.of(row).model_dump(mode="json"))


@router.post(
    "/api/v1/admin/distributors/applications/{application_id}/reject",
    summary="Reject a pending application with a reason (audited); the user may apply again",
    response_model=Envelope[ApplicationOut],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND, ErrorCode.CONFLICT),
)
async def reject(application_id: Id, body: Rejection, reviewer: Reviewer, session: SessionDep) -> OrjsonResponse:
    row = await service.reject(session, application_id=application_id, reviewer_id=reviewer.id, reason=body.reason)
    return ok(ApplicationOut.of(row).model_dump(mode="json"))


@router.post(
    "/api/v1/admin/distributors/applications/{application_id}/reveal-id",
    summary="Decrypt an applicant's full ID number (distributors:reveal; every call audited with its reason)",
    response_model=Envelope[RevealedIdNumber],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND, ErrorCode.DEPENDENCY_UNAVAILABLE),
)
async def reveal_id(
    application_id: Id, body: RevealRequest, actor: Revealer, session: SessionDep, cipher: CipherDep
) -> OrjsonResponse:
    number = await service.reveal_id_number(
        session, cipher, application_id=application_id, actor_id=actor.id, reason=body.reason
    )
    log.info("id_number_revealed", application_id=application_id)
    return ok({"application_id": application_id, "id_number": number})
