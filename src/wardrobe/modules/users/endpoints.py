"""HTTP routes of /api/v1/users (profile, invite code, referrer)."""

from __future__ import annotations

from fastapi import APIRouter

from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.modules.auth.deps import CurrentUser, InfraDep, SessionDep
from wardrobe.modules.users import repository, service
from wardrobe.modules.users.schemas import InviteOut, ProfileUpdate, ReferrerBind, UserOut

router = APIRouter(prefix="/api/v1/users", tags=["users"])


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
    body: ReferrerBind, principal: CurrentUser, infra: InfraDep, session: SessionDep
) -> OrjsonResponse:
    policy = service.SignupPolicy.of(infra.settings)
    user = await service.bind_referrer_later(session, principal.user, body.invite_code, policy)
    return ok(_user_body(user))
