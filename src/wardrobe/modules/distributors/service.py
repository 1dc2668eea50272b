"""Distributor applications: apply (the ID number sealed before it is stored), review, reveal.

Every review and every decryption of an ID number writes an audit record in the same transaction
as its effect. Key management failures answer 503 DEPENDENCY_UNAVAILABLE and store nothing; a
record that no longer opens under its owner's context is an integrity failure (500, logged).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.audit import add_audit
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.models import ApplicationStatus, DistributorApplication, Role
from wardrobe.models.base import utcnow
from wardrobe.modules.crypto.envelope import EnvelopeCipher, SealedValue
from wardrobe.modules.crypto.keys import DecryptionFailed, EnvelopeError, KeyUnavailable
from wardrobe.modules.crypto.rotation import SealedColumns
from wardrobe.modules.distributors.id_card import mask_id_number
from wardrobe.modules.distributors.schemas import ApplicationCreate
from wardrobe.modules.users import repository as users_repo

TARGET = "distributor_application"


def id_number_context(user_id: int) -> dict[str, str]:
    """The encryption context of an applicant's ID number: it opens only as that user's."""
    return {"user_id": str(user_id)}


# For ``wardrobe crypto rotate``.
SEALED_ID_NUMBERS = SealedColumns(
    name="distributor_applications.id_number",
    id=DistributorApplication.id,
    wrapped_key=DistributorApplication.id_wrapped_key,
    key_ref=DistributorApplication.id_key_ref,
    context_columns=(DistributorApplication.user_id,),
    context=lambda values: id_number_context(int(values[0])),
)


def _key_failure(exc: EnvelopeError, application_id: int | None) -> AppError:
    if isinstance(exc, KeyUnavailable):
        return AppError(ErrorCode.DEPENDENCY_UNAVAILABLE, detail=f"key management: {exc}")
    return AppError(ErrorCode.INTERNAL_ERROR, detail=f"sealed ID number of application {application_id}: {exc}")


async def apply(
    session: AsyncSession, cipher: EnvelopeCipher, *, user_id: int, body: ApplicationCreate
) -> DistributorApplication:
    """A new pending application; 409 while the user has one pending or approved."""
    live = await session.scalar(
        select(DistributorApplication.id).where(DistributorApplication.active_user_id == user_id)
    )
    if live is not None:
        raise AppError(ErrorCode.CONFLICT, data={"application_id": live})
    try:
        sealed = await cipher.seal(body.id_number, id_number_context(user_id))
    except EnvelopeError as exc:
        raise _key_failure(exc, None) from None
    row = DistributorApplication(
        user_id=user_id,
        active_user_id=user_id,
        real_name=body.real_name.strip(),
        phone=body.phone,
        id_number_masked=mask_id_number(body.id_number),
        id_wrapped_key=sealed.wrapped_key,
        id_key_ref=sealed.key_ref,
        id_nonce=sealed.nonce,
        id_ciphertext=sealed.ciphertext,
        status=ApplicationStatus.PENDING.value,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        # Another request of the same user won the unique active_user_id.
        raise AppError(ErrorCode.CONFLICT) from None
    return row


async def latest_of(session: AsyncSession, user_id: int) -> DistributorApplication | None:
    return await session.scalar(
        select(DistributorApplication)
        .where(DistributorApplication.user_id == user_id)
        .order_by(DistributorApplication.id.desc())
        .limit(1)
    )


async def list_applications(
    session: AsyncSession, *, limit: int, before_id: int | None, status: str | None
) -> list[DistributorApplication]:
    """Newest first, keyset-paginated on the primary key."""
    stmt = select(DistributorApplication).order_by(DistributorApplication.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(DistributorApplication.id < before_id)
    if status:
        stmt = stmt.where(DistributorApplication.status == status)
    return list(await session.scalars(stmt))


async def _pending(session: AsyncSession, application_id: int) -> DistributorApplication:
    row = await session.scalar(
        select(DistributorApplication).where(DistributorApplication.id == application_id).with_for_update()
    )
    if row is None:
        raise NotFound()
    if row.status != ApplicationStatus.PENDING.value:
        raise AppError(ErrorCode.CONFLICT, data={"status": row.status})
    return row


def _decide(row: DistributorApplication, status: ApplicationStatus, reviewer_id: int, reason: str | None) -> None:
    row.status = status.value
    row.reviewer_id, row.review_reason, row.reviewed_at = reviewer_id, reason, utcnow()


async def approve(
    session: AsyncSession, *, application_id: int, reviewer_id: int, reason: str | None
) -> DistributorApplication:
    """Approve a pending application and make its applicant a distributor. A user whose role is
    already above ``user`` keeps it (roles are one per user; staff need no promotion)."""
    row = await _pending(session, application_id)
    _decide(row, ApplicationStatus.APPROVED, reviewer_id, reason)
    user = await users_repo.get_by_id(session, row.user_id)
    if user is not None and user.role == Role.USER.value:
        user.role = Role.DISTRIBUTOR.value
        add_audit(
            session,
            actor_id=reviewer_id,
            action="user.role",
            target_type="user",
            target_id=str(user.id),
            reason=f"application {row.id} approved",
            before={"role": Role.USER.value},
            after={"role": Role.DISTRIBUTOR.value},
        )
    await _audited(session, row, reviewer_id, "approve", reason, decided=True)
    return row


async def reject(
    session: AsyncSession, *, application_id: int, reviewer_id: int, reason: str
) -> DistributorApplication:
    """Reject a pending application; the user may apply again."""
    row = await _pending(session, application_id)
    _decide(row, ApplicationStatus.REJECTED, reviewer_id, reason)
    row.active_user_id = None
    await _audited(session, row, reviewer_id, "reject", reason, decided=True)
    return row


async def _audited(
    session: AsyncSession,
    row: DistributorApplication,
    actor_id: int,
    verb: str,
    reason: str | None,
    *,
    decided: bool = False,
) -> None:
    """``decided``: the action moved a pending application to its current status."""
    add_audit(
        session,
        actor_id=actor_id,
        action=f"{TARGET}.{verb}",
        target_type=TARGET,
        target_id=str(row.id),
        reason=reason,
        before={"status": ApplicationStatus.PENDING.value} if decided else None,
        after={"status": row.status} if decided else None,
    )
    await session.flush()


async def reveal_id_number(
    session: AsyncSession, cipher: EnvelopeCipher, *, application_id: int, actor_id: int, reason: str
) -> str:
    """The full ID number, for a caller already checked to hold ``distributors:reveal``. The audit
    record (who, when, why) commits with the request: no answer without it."""
    row = await session.get(DistributorApplication, application_id)
    if row is None:
        raise NotFound()
    sealed = SealedValue(row.id_wrapped_key, row.id_key_ref, row.id_nonce, row.id_ciphertext)
    try:
        number = await cipher.open(sealed, id_number_context(row.user_id))
    except (KeyUnavailable, DecryptionFailed) as exc:
        raise _key_failure(exc, row.id) from None
    await _audited(session, row, actor_id, "reveal_id", reason)
    return number


def record_refused_reveal(session: AsyncSession, *, application_id: str, actor_id: int, reason: str | None) -> None:
    """An attempt to reveal without the permission, kept although the request fails."""
    add_audit(
        session,
        actor_id=actor_id,
        action=f"{TARGET}.reveal_id_denied",
        target_type=TARGET,
        target_id=application_id[:64],
        reason=(reason or "")[:500] or None,
    )
