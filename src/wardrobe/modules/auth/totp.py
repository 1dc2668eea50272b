"""TOTP (RFC 6238, an authenticator app's 6-digit codes) as a second factor of sign-in.

- **Secret**: 160 random bits, sealed with the envelope cipher (modules/crypto, as ID numbers are)
  under a context bound to the user, so a sealed value copied to another row does not open. It is
  shown once, at setup (also as the ``otpauth://`` URI an app scans), and never again; it is never
  logged.
- **Enrolment**: setup needs the account's password (fresh proof: an access token alone must not
  bind a thief's authenticator); the secret stays pending until a code from it enables TOTP.
  Enabling and disabling (which needs a current code) are audited and end every other session.
- **Codes**: 30-second steps, one step either side for clock drift. A code is accepted only when its
  step is later than the last accepted one (``user_totp.last_step``, moved by a conditional UPDATE),
  so each code works once, also against two racing requests.
- **Guessing**: at login every attempt spends a unit of the password back-off windows (per account
  and address, and per account), whether the code is right or wrong; enable and disable spend the
  account's own window. Six digits with three accepted at a time cannot be walked through that.
- Who may enable it: any account with a password. Staff are the point: where
  ``WARDROBE_ADMIN_TOTP_REQUIRED`` holds, admins need a session opened with a code for staff routes
  (core/principal.py ``check_second_factor``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyotp
from pyotp.utils import strings_equal
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.audit import add_audit
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.logging import get_logger, mask_phone
from wardrobe.core.metrics import AUTH_EVENTS
from wardrobe.core.ratelimit import parse_limits
from wardrobe.models import User, UserTotp
from wardrobe.models.base import utcnow
from wardrobe.modules.auth import reauth, repository, tokens
from wardrobe.modules.auth.parts import AccountParts
from wardrobe.modules.crypto.envelope import EnvelopeCipher, SealedValue
from wardrobe.modules.crypto.keys import EnvelopeError, KeyUnavailable
from wardrobe.modules.crypto.rotation import SealedColumns
from wardrobe.modules.users import repository as users_repo

log = get_logger("wardrobe.auth.totp")
ISSUER = "Wardrobe"
VALID_WINDOW = 1  # steps accepted either side of the current one
TOTP_WINDOW_KEY = "totp"  # the account's window for enable and disable attempts


def clock() -> float:
    """Now, in seconds since the epoch: the time codes are checked at (tests pin it)."""
    return time.time()


def totp_context(user_id: int) -> dict[str, str]:
    """The encryption context of a user's TOTP secret: it opens only as that user's, and only as a
    TOTP secret (an ID number sealed for the same user has another context)."""
    return {"user_id": str(user_id), "purpose": "totp"}


# For ``wardrobe crypto rotate``.
SEALED_TOTP_SECRETS = SealedColumns(
    name="user_totp.secret",
    id=UserTotp.user_id,
    wrapped_key=UserTotp.secret_wrapped_key,
    key_ref=UserTotp.secret_key_ref,
    context_columns=(UserTotp.user_id,),
    context=lambda values: totp_context(int(values[0])),
)


@dataclass(frozen=True, slots=True)
class TotpSetup:
    secret: str
    otpauth_uri: str


def _key_failure(exc: EnvelopeError, user_id: int) -> AppError:
    if isinstance(exc, KeyUnavailable):
        return AppError(ErrorCode.DEPENDENCY_UNAVAILABLE, detail=f"key management: {exc}")
    return AppError(ErrorCode.INTERNAL_ERROR, detail=f"sealed TOTP secret of user {user_id}: {exc}")


def _conflict(reason: str) -> AppError:
    return AppError(ErrorCode.CONFLICT, data={"reason": reason})


def _label(user: User) -> str:
    # What the authenticator app lists the entry under: never the full phone number.
    return mask_phone(user.phone) if user.phone else f"user {user.id}"


def matching_step(secret: str, code: str, at: float) -> int | None:
    """The time step whose code ``code`` is, within the accepted window around ``at``; else None."""
    otp = pyotp.TOTP(secret)
    current = otp.timecode(at)
    found: int | None = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if strings_equal(code, otp.generate_otp(step)):  # constant time
            found = step
    return found


async def _accept(session: AsyncSession, cipher: EnvelopeCipher, row: UserTotp, code: str) -> bool:
    """Whether ``code`` is a current code of ``row``'s secret not accepted before (it is then used up)."""
    sealed = SealedValue(row.secret_wrapped_key, row.secret_key_ref, row.secret_nonce, row.secret_ciphertext)
    try:
        secret = await cipher.open(sealed, totp_context(row.user_id))
    except EnvelopeError as exc:
        raise _key_failure(exc, row.user_id) from None
    step = matching_step(secret, code, clock())
    if step is None:
        return False
    return await repository.advance_totp_step(session, row.user_id, row.secret_wrapped_key, step)


async def second_factor(session: AsyncSession, cipher: EnvelopeCipher, user: User, code: str | None) -> bool:
    """At login, after the first factor: True when the account has TOTP and ``code`` is a fresh
    one of it, False when it has none; else 401 TOTP_REQUIRED (no code) or TOTP_INVALID (wrong,
    stale or already used). The caller has spent a unit of the back-off windows for the attempt."""
    if user.totp_enabled_at is None:
        return False
    if code is None:
        AUTH_EVENTS.labels("login_totp", "required").inc()
        raise AppError(ErrorCode.TOTP_REQUIRED)
    row = await repository.totp_secret(session, user.id)
    if row is None or not await _accept(session, cipher, row, code):
        AUTH_EVENTS.labels("login_totp", "failed").inc()
        raise AppError(ErrorCode.TOTP_INVALID)
    AUTH_EVENTS.labels("login_totp", "ok").inc()
    return True


async def start_setup(
    session: AsyncSession, parts: AccountParts, cipher: EnvelopeCipher, user: User, password: str
) -> TotpSetup:
    """A new pending secret for ``user``, who proves the account with its password. 409 while TOTP
    is in force (disable it first); a pending secret from an earlier setup is replaced."""
    if not user.password_hash:
        message = "this account has no password; set one first"
        raise AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": "password", "message": message}])
    await reauth.check_password(parts, user, password)
    if user.totp_enabled_at is not None:
        raise _conflict("totp_enabled")
    secret = pyotp.random_base32()
    try:
        sealed = await cipher.seal(secret, totp_context(user.id))
    except EnvelopeError as exc:
        raise _key_failure(exc, user.id) from None
    if not await repository.store_pending_totp(session, user.id, sealed):
        raise _conflict("totp_enabled")
    log.info("totp_setup_started", user_id=user.id)
    uri = pyotp.TOTP(secret).provisioning_uri(name=_label(user), issuer_name=ISSUER)
    return TotpSetup(secret=secret, otpauth_uri=uri)


async def _spend_attempt(parts: AccountParts, user: User) -> None:
    await parts.limiter.hit(parse_limits(parts.settings.login_failure_limits), TOTP_WINDOW_KEY, str(user.id))


async def _forgive_attempts(parts: AccountParts, user: User) -> None:
    await parts.limiter.clear(parse_limits(parts.settings.login_failure_limits), TOTP_WINDOW_KEY, str(user.id))


async def enable(
    session: AsyncSession, parts: AccountParts, cipher: EnvelopeCipher, user: User, code: str, session_id: str
) -> int:
    """Put the pending secret in force with a code from it. The session making the request counts
    as opened with TOTP from now on (it gave the password at setup and a code now); every other
    session ends. Returns how many ended."""
    await _spend_attempt(parts, user)
    if user.totp_enabled_at is not None:
        raise _conflict("totp_enabled")
    row = await repository.totp_secret(session, user.id)
    if row is None:
        raise _conflict("no_pending_setup")
    if not await _accept(session, cipher, row, code):
        raise AppError(ErrorCode.AUTH_CODE_INVALID, detail="totp code")
    if not await repository.put_totp_in_force(session, user.id, utcnow()):
        raise _conflict("totp_enabled")
    await _forgive_attempts(parts, user)
    await repository.set_session_mfa(session, session_id, True)
    revoked = await tokens.revoke_all(session, user.id, "totp_enabled", keep_session_id=session_id)
    _audit(session, user.id, user.id, "user.totp_enabled", None, enabled=True)
    await session.flush()
    log.info("totp_enabled", user_id=user.id, other_sessions_revoked=revoked)
    return revoked


async def disable(
    session: AsyncSession, parts: AccountParts, cipher: EnvelopeCipher, user: User, code: str, session_id: str
) -> int:
    """End TOTP with a current code from it and forget the secret; every other session ends, and
    this one no longer counts as opened with TOTP. Returns how many sessions ended."""
    await _spend_attempt(parts, user)
    if user.totp_enabled_at is None:
        raise _conflict("totp_not_enabled")
    row = await repository.totp_secret(session, user.id)
    if row is None or not await _accept(session, cipher, row, code):
        raise AppError(ErrorCode.AUTH_CODE_INVALID, detail="totp code")
    if not await repository.remove_totp(session, user.id):
        raise _conflict("totp_not_enabled")
    await _forgive_attempts(parts, user)
    await repository.set_session_mfa(session, session_id, False)
    revoked = await tokens.revoke_all(session, user.id, "totp_disabled", keep_session_id=session_id)
    _audit(session, user.id, user.id, "user.totp_disabled", None, enabled=False)
    await session.flush()
    log.info("totp_disabled", user_id=user.id, other_sessions_revoked=revoked)
    return revoked


async def reset(session: AsyncSession, *, phone: str, actor_id: int | None, reason: str) -> tuple[int, int]:
    """For an account whose authenticator is lost (``wardrobe admin reset-totp``): TOTP ends, its
    secret is forgotten and every session ends; the owner logs in with the password and enrols
    again. Returns ``(user id, sessions ended)``; 404 for an unknown phone, 409 without TOTP."""
    user = await users_repo.get_by_phone(session, phone)
    if user is None:
        raise NotFound()
    if not await repository.remove_totp(session, user.id):
        raise _conflict("totp_not_enabled")
    revoked = await tokens.revoke_all(session, user.id, "totp_reset")
    _audit(session, actor_id, user.id, "user.totp_reset", reason, enabled=False)
    await session.flush()
    log.warning("totp_reset", user_id=user.id, sessions_revoked=revoked)
    return user.id, revoked


def _audit(
    session: AsyncSession, actor_id: int | None, user_id: int, action: str, reason: str | None, *, enabled: bool
) -> None:
    add_audit(
        session,
        actor_id=actor_id,
        action=action,
        target_type="user",
        target_id=str(user_id),
        reason=reason,
        before={"totp_enabled": not enabled},
        after={"totp_enabled": enabled},
    )
