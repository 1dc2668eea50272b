"""Deleting an account (PIPL's right to delete).

What goes, in one transaction with the money:
- open tasks: queued ones are canceled and refunded here; running ones are asked to stop and their
  lease holder refunds them when it does (the one cancel path, so each hold is released once);
- every login session, through ``tokens.revoke_all`` (which also ends the account's sockets);
- the person: phone, password, TOTP secret, WeChat ids, profile fields, invite code, session
  device labels, verification codes, distributor applications (real name, phone, and the sealed ID number with
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

from wardrobe.core.audit import add_audit
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.core.outbox import Announcer
from wardrobe.models import (
    AuthSession,
    DistributorApplication,
    Gender,
    Role,
    SmsCode,
    User,
    UserStatus,
    UserTotp,
    VerifiedUpload,
    WeChatAccount,
)
from wardrobe.models.base import utcnow
from wardrobe.modules.account.schemas import AccountDeletion
from wardrobe.modules.auth import reauth, tokens
from wardrobe.modules.auth.parts import AccountParts
from wardrobe.modules.auth.sms_codes import CodePurpose
from wardrobe.modules.storage import pending_deletions
from wardrobe.modules.tasks.deletion import cancel_open_tasks

log = get_logger("wardrobe.users.erasure")


@dataclass(frozen=True, slots=True)
class DeletionOutcome:
    tasks_canceled: int
    tasks_stopping: int
    sessions_revoked: int


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
            totp_enabled_at=None,
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
    # The WeChat identities go with the person: the same WeChat user logging in later is a stranger.
    await session.execute(delete(WeChatAccount).where(WeChatAccount.user_id == user.id))


async def delete_account(
    session: AsyncSession, parts: AccountParts, announcer: Announcer, user: User, proof: AccountDeletion
) -> DeletionOutcome:
    """Check the proof, then erase the account in the caller's transaction (see the module)."""
    await reauth.confirm_identity(session, parts, user, CodePurpose.DELETE_ACCOUNT, proof.proof())
    phone = user.phone
    await _erase_person(session, user)
    canceled, stopping = await cancel_open_tasks(session, announcer, user.id)
    revoked = await tokens.revoke_all(session, user.id, "account_deleted")
    await session.execute(
        update(AuthSession).where(AuthSession.user_id == user.id).values(client=None, device=None, ip_masked=None)
    )
    if phone:
        await session.execute(delete(SmsCode).where(SmsCode.phone == phone))
    await session.execute(delete(DistributorApplication).where(DistributorApplication.user_id == user.id))
    await session.execute(delete(UserTotp).where(UserTotp.user_id == user.id))
    await session.execute(delete(VerifiedUpload).where(VerifiedUpload.user_id == user.id))
    await pending_deletions.erase_finished_task_contents(session, user.id, utcnow())
    pending_deletions.schedule_account(session, user.id, "account_deleted")
    add_audit(session, actor_id=user.id, action="user.delete", target_type="user", target_id=str(user.id), reason=None)
    await session.flush()
    await session.refresh(user)
    log.info("account_deleted", user_id=user.id, tasks_canceled=canceled, tasks_stopping=stopping)
    return DeletionOutcome(canceled, stopping, revoked)
