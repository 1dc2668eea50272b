"""HTTP routes of /api/v1/users (profile, invite code, referrer)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks
from fastapi.responses import StreamingResponse

from wardrobe.core.context import request_id_var
from wardrobe.core.deps import AnnouncerDep, LimiterDep, SessionDep, SessionFactoryDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.principal import CurrentUser
from wardrobe.core.ratelimit import per_hour
from wardrobe.modules.account import erasure, export
from wardrobe.modules.account.schemas import AccountDeleted, AccountDeletion, AccountExport
from wardrobe.modules.auth.parts import AccountPartsDep
from wardrobe.modules.storage.deps import StorageDep
from wardrobe.modules.storage.pending_deletions import delete_pending_objects
from wardrobe.modules.users import repository, service
from wardrobe.modules.users.schemas import InviteOut, ProfileUpdate, ReferrerBind, UserOut

router = APIRouter(prefix="/api/v1/users", tags=["users"])
# Exports per user and hour: each one reads the whole account.
EXPORT_LIMIT = 10


def _user_body(user: object) -> dict[str, object]:
    return UserOut.of(user).model_dump(mode="json")  # type: ignore[arg-type]


@router.get("/me", summary="The logged-in user", response_model=Envelope[UserOut], responses=errors(*AUTH_ERRORS))
async def get_me(principal: CurrentUser) -> OrjsonResponse:
    return ok(_user_body(principal.user))


@router.patch(
    "/me",
    summary="Update the profile (setting a nickname completes registration)",
    response_model=Envelope[UserOut],
    responses=errors(*AUTH_ERRORS),
)
async def update_me(body: ProfileUpdate, principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    user = await service.update_profile(session, principal.user, body)
    return ok(_user_body(user))


@router.get(
    "/me/invite",
    summary="My invite code and how many people it brought",
    response_model=Envelope[InviteOut],
    responses=errors(*AUTH_ERRORS),
)
async def my_invite(principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    count = await repository.count_referrals(session, principal.id)
    return ok({"invite_code": principal.user.invite_code, "invited_count": count})


@router.put(
    "/me/referrer",
    summary="Bind a referrer by invite code (once, within 7 days of sign-up)",
    response_model=Envelope[UserOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.INVITE_CODE_INVALID, ErrorCode.REFERRER_ALREADY_BOUND),
)
async def bind_referrer(
    body: ReferrerBind, principal: CurrentUser, settings: SettingsDep, session: SessionDep
) -> OrjsonResponse:
    policy = service.SignupPolicy.of(settings)
    user = await service.bind_referrer_later(session, principal.user, body.invite_code, policy)
    return ok(_user_body(user))


# -- The right to delete and to a copy (erasure.py, export.py) --------------------------------


@router.delete(
    "/me",
    summary="Delete my account",
    description="Send exactly one proof: `code` (an SMS code sent to this account's phone with purpose "
    "`delete_account`: request it with your bearer token and your phone), `password`, or — for an account "
    "with neither phone nor password — `wechat_code`, a fresh `wx.login` code. Queued and running tasks are "
    "canceled and refunded, every session ends, uploads and results are deleted, personal data is erased. "
    "Orders and the quota ledger stay for accounting, detached from you (unspent quota stays on the "
    "anonymous account, so a paid order can still be refunded). The same phone can later sign up anew.",
    response_model=Envelope[AccountDeleted],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.AUTH_CODE_INVALID,
        ErrorCode.AUTH_INVALID_CREDENTIALS,
        ErrorCode.RATE_LIMITED,
        ErrorCode.FEATURE_UNAVAILABLE,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)
async def delete_me(
    body: AccountDeletion,
    principal: CurrentUser,
    parts: AccountPartsDep,
    announcer: AnnouncerDep,
    storage: StorageDep,
    session: SessionDep,
    background: BackgroundTasks,
) -> OrjsonResponse:
    outcome = await erasure.delete_account(session, parts, announcer, principal.user, body)
    # Runs after the answer, so after the commit; what fails there is retried by the scheduler.
    background.add_task(delete_pending_objects, parts.session_factory, storage, principal.id)
    return ok(
        {
            "deleted": True,
            "tasks_canceled": outcome.tasks_canceled,
            "tasks_stopping": outcome.tasks_stopping,
            "sessions_revoked": outcome.sessions_revoked,
        }
    )


@router.get(
    "/me/export",
    summary="A copy of my data (JSON)",
    description="Profile, quota, invitations, distributor applications (masked), sessions, tasks with the "
    "object keys of their inputs and outputs, orders and the quota ledger, newest first and complete: the "
    f"answer is streamed, read {export.PAGE} rows at a time. At most {EXPORT_LIMIT} exports per hour.",
    response_model=Envelope[AccountExport],
    responses=errors(*AUTH_ERRORS, ErrorCode.RATE_LIMITED),
)
async def export_me(principal: CurrentUser, limiter: LimiterDep, sessions: SessionFactoryDep) -> StreamingResponse:
    await limiter.hit([per_hour(EXPORT_LIMIT)], "account-export", str(principal.id))
    return StreamingResponse(
        export.stream_export(sessions, principal.id, request_id_var.get()),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="wardrobe-export.json"'},
    )
