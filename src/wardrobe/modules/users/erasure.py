"""Deleting an account (PIPL's right to delete).

What goes, in one transaction with the money:
- open tasks: queued ones are canceled and refunded here; running ones are asked to stop and their
  lease holder refunds them when it does (the one cancel path, so each hold is released once);
- every login session, through ``tokens.revoke_all`` (which also ends the account's sockets);
- the person: phone, password, WeChat ids, profile fields, invite code, session device labels,
  verification codes, distributor applications (real name, phone, and the sealed ID number with
  its wrapped data key: the row goes, so the live database can no longer decrypt it; database
  backups hold it until they age out);
- the content of finished tasks (inputs such as prompts, outputs); what running tasks still
  produce is erased when the last of them ends;
- the objects (uploads, results): recorded in the same transaction and deleted after the commit,
  then by the scheduler until they are gone (storage/pending_deletions.py).

What stays, detached from the person: the user row as an anonymous tombstone (status ``deleted``)
that orders, refunds, quota holds and the ledger point to, and whose unspent quota stays on its
account so that an order can still be refunded; the audit log. The phone and WeChat ids are free:
logging in with them later opens a new, empty account.

Proof of possession (beyond the access token, which may be stolen): an SMS code sent to the
account's own phone, or the password (rate limited with password changes), or for an account that
has neither — WeChat only — a fresh ``wx.login`` code that WeChat resolves to the same openid.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.errors import AppError, DependencyUnavailable, ErrorCode, RateLimited
from wardrobe.core.infra import Infra
from wardrobe.core.logging import get_logger
from wardrobe.core.ratelimit import parse_limits
from wardrobe.core.security import verify_password
from wardrobe.models import (
    AuthSession,
    DistributorApplication,
    Gender,
    Role,
    SmsCode,
    User,
    UserStatus,
    VerifiedUpload,
)
from wardrobe.models.base import utcnow
from wardrobe.modules.auth import sms_codes, tokens
from wardrobe.modules.auth.sms_codes import CodePurpose
from wardrobe.modules.auth.wechat_client import WeChatCodeInvalidError, WeChatError, WeChatRateLimitedError
from wardrobe.modules.storage import pending_deletions
from wardrobe.modules.tasks.deletion import cancel_open_tasks
from wardrobe.modules.users import repository
from wardrobe.modules.users.erasure_schemas import AccountDeletion

log = get_logger("wardrobe.users.erasure")

# Shared with password changes: alternating the two never doubles the guesses at a password.
PASSWORD_WINDOW_KEY = "password-change"  # noqa: S105 - a rate-limit key, not a secret


@dataclass(frozen=True, slots=True)
class DeletionOutcome:
    tasks_canceled: int
    tasks_stopping: int
    sessions_revoked: int


def _not_applicable(field: str, message: str) -> AppError:
    return AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": field, "message": message}])


async def _check_wechat(infra: Infra, user: User, code: str) -> None:
    if infra.wechat is None:
        raise AppError(ErrorCode.FEATURE_UNAVAILABLE, detail="wechat is not configured")
    try:
        wx = await infra.wechat.code2session(code)
    except WeChatCodeInvalidError as exc:
        raise AppError(ErrorCode.AUTH_CODE_INVALID) from exc
    except WeChatRateLimitedError as exc:
        raise RateLimited(60, detail="wechat 45011") from exc
    except WeChatError as exc:
        raise DependencyUnavailable(detail=f"wechat {exc}") from exc
    if not secrets.compare_digest(wx.openid, user.wechat_openid or ""):
        raise AppError(ErrorCode.AUTH_CODE_INVALID, detail="wechat code of another user")


async def check_proof(infra: Infra, user: User, proof: AccountDeletion) -> None:
    """Raise unless ``proof`` shows the caller holds the account now."""
    if proof.code is not None:
        if not user.phone:
            raise _not_applicable("code", "this account has no phone; use password or wechat_code")
        await sms_codes.verify_code(infra, phone=user.phone, purpose=CodePurpose.DELETE_ACCOUNT, code=proof.code)
    elif proof.password is not None:
        if not user.password_hash:
            raise _not_applicable("password", "this account has no password; use code or wechat_code")
        limits = parse_limits(infra.settings.login_failure_limits)
        await infra.limiter.hit(limits, PASSWORD_WINDOW_KEY, str(user.id))
        if not await verify_password(proof.password, user.password_hash):
            raise AppError(ErrorCode.AUTH_INVALID_CREDENTIALS)
    elif proof.wechat_code is not None:
        if not user.wechat_openid:
            raise _not_applicable("wechat_code", "this account is not a WeChat account; use code or password")
        await _check_wechat(infra, user, proof.wechat_code)


def _tombstone_invite_code() -> str:
    # A value no typed code can match: normalize_code drops "-", so a lookup never sees one.
    return "-" + secrets.token_hex(7)


async def _erase_person(session: AsyncSession, user: User) -> None:
    """Turn the user row into the anonymous tombstone; conditional, so two concurrent deletions
    of one account cannot both proceed."""
    now = utcnow()
    result = await session.execute(
        update(User)
        .where(User.id == user.id, User.status != UserStatus.DELETED.value)
        .values(
            status=UserStatus.DELETED.value,
            deleted_at=now,
            role=Role.USER.value,
            phone=None,
            password_hash=None,
            password_changed_at=None,
            nickname=None,
            avatar_url=None,
            gender=Gender.UNKNOWN.value,
            birthday=None,
            bio=None,
            region=None,
            profile_completed=False,
            wechat_openid=None,
            wechat_unionid=None,
            invite_code=_tombstone_invite_code(),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise AppError(ErrorCode.AUTH_SESSION_REVOKED, detail="account already deleted")


async def delete_account(session: AsyncSession, infra: Infra, user: User, proof: AccountDeletion) -> DeletionOutcome:
    """Check the proof, then erase the account in the caller's transaction (see the module)."""
    await check_proof(infra, user, proof)
    phone = user.phone
    await _erase_person(session, user)
    canceled, stopping = await cancel_open_tasks(session, infra, user.id)
    revoked = await tokens.revoke_all(session, user.id, "account_deleted")
    await session.execute(update(AuthSession).where(AuthSession.user_id == user.id).values(client=None))
    if phone:
        await session.execute(delete(SmsCode).where(SmsCode.phone == phone))
    await session.execute(delete(DistributorApplication).where(DistributorApplication.user_id == user.id))
    await session.execute(delete(VerifiedUpload).where(VerifiedUpload.user_id == user.id))
    await pending_deletions.erase_finished_task_contents(session, user.id, utcnow())
    pending_deletions.schedule_account(session, user.id, "account_deleted")
    repository.add_audit(
        session, actor_id=user.id, action="user.delete", target_type="user", target_id=str(user.id), reason=None
    )
    await session.flush()
    await session.refresh(user)
    log.info("account_deleted", user_id=user.id, tasks_canceled=canceled, tasks_stopping=stopping)
    return DeletionOutcome(canceled, stopping, revoked)
