"""HTTP routes of /api/v1/auth/totp: set up, enable and disable an authenticator app (TOTP).

Any signed-in account with a password may use them; staff are who they are for (see totp.py).
They ask for no permission beyond being signed in, so that an admin held back by
``WARDROBE_ADMIN_TOTP_REQUIRED`` can still enrol.
"""

from __future__ import annotations

from fastapi import APIRouter

from wardrobe.core.deps import SessionDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.principal import CurrentUser
from wardrobe.modules.auth import totp
from wardrobe.modules.auth.parts import AccountPartsDep
from wardrobe.modules.auth.schemas import TotpCodeRequest, TotpSecret, TotpSetupRequest, TotpState
from wardrobe.modules.crypto.deps import CipherDep

router = APIRouter(prefix="/api/v1/auth/totp", tags=["auth"])


@router.post(
    "/setup",
    summary="Start TOTP enrolment: a new secret for the authenticator app (needs the password)",
    description="Answers the secret (base32, for manual entry) and the `otpauth://` URI to show as a QR "
    "code; this is the only time the secret is shown. It stays pending until `POST /api/v1/auth/totp/enable` "
    "proves the app holds it; setting up again replaces a pending one. 409 `CONFLICT` while TOTP is "
    "enabled (disable it first). The password counts in the same back-off as a password change.",
    response_model=Envelope[TotpSecret],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.AUTH_INVALID_CREDENTIALS,
        ErrorCode.CONFLICT,
        ErrorCode.RATE_LIMITED,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)
async def setup(
    body: TotpSetupRequest, principal: CurrentUser, parts: AccountPartsDep, session: SessionDep, cipher: CipherDep
) -> OrjsonResponse:
    started = await totp.start_setup(session, parts, cipher, principal.user, body.password)
    response = ok({"secret": started.secret, "otpauth_uri": started.otpauth_uri})
    response.headers["Cache-Control"] = "no-store"  # a secret: no cache may keep it
    return response


@router.post(
    "/enable",
    summary="Enable TOTP with a code from the app just set up",
    description="Every other session of the account ends; this one counts as opened with TOTP from now "
    "on. A wrong or already used code is 400 `AUTH_CODE_INVALID` (counted: repeated guesses get 429); "
    "409 `CONFLICT` without a pending setup or when TOTP is already enabled. Audited.",
    response_model=Envelope[TotpState],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.AUTH_CODE_INVALID,
        ErrorCode.CONFLICT,
        ErrorCode.RATE_LIMITED,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)
async def enable(
    body: TotpCodeRequest, principal: CurrentUser, parts: AccountPartsDep, session: SessionDep, cipher: CipherDep
) -> OrjsonResponse:
    revoked = await totp.enable(session, parts, cipher, principal.user, body.code, principal.session_id)
    return ok({"enabled": True, "other_sessions_revoked": revoked})


@router.post(
    "/disable",
    summary="Disable TOTP with a current code from the app",
    description="The secret is forgotten and every other session of the account ends. A wrong or already "
    "used code is 400 `AUTH_CODE_INVALID` (counted: repeated guesses get 429); 409 `CONFLICT` when TOTP is "
    "not enabled. A lost device is reset by an operator with `wardrobe admin reset-totp`. Audited.",
    response_model=Envelope[TotpState],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.AUTH_CODE_INVALID,
        ErrorCode.CONFLICT,
        ErrorCode.RATE_LIMITED,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)
async def disable(
    body: TotpCodeRequest, principal: CurrentUser, parts: AccountPartsDep, session: SessionDep, cipher: CipherDep
) -> OrjsonResponse:
    revoked = await totp.disable(session, parts, cipher, principal.user, body.code, principal.session_id)
    return ok({"enabled": False, "other_sessions_revoked": revoked})
