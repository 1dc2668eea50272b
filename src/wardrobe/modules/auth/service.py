"""Login by SMS code, password or WeChat (with a TOTP code where the account has one); passwords;
phone binding."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.audit import add_audit
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.logging import get_logger, mask_phone
from wardrobe.core.metrics import AUTH_EVENTS
from wardrobe.core.principal import ClientInfo
from wardrobe.core.ratelimit import Windows, parse_limits
from wardrobe.core.security import hash_password, verify_password
from wardrobe.models import User, WeChatApp
from wardrobe.models.base import utcnow
from wardrobe.modules.auth import notices, reauth, sms_codes, tokens, totp
from wardrobe.modules.auth.parts import AccountParts
from wardrobe.modules.auth.phone import normalize_phone
from wardrobe.modules.auth.reauth import Proof
from wardrobe.modules.auth.sms_codes import CodePurpose
from wardrobe.modules.auth.tokens import TokenPair
from wardrobe.modules.auth.wechat_errors import consume_state, oauth_of, wechat_answers, wechat_of
from wardrobe.modules.auth.wechat_oauth import WeChatIdentity
from wardrobe.modules.crypto.envelope import EnvelopeCipher
from wardrobe.modules.users import repository as users_repo
from wardrobe.modules.users import service as users_service
from wardrobe.modules.users import wechat as users_wechat
from wardrobe.modules.users.service import SignupPolicy

log = get_logger("wardrobe.auth")


@dataclass(frozen=True, slots=True)
class LoginResult:
    tokens: TokenPair
    user: User
    is_new_user: bool


def _ensure_active(user: User) -> None:
    if not user.is_active:
        raise AppError(ErrorCode.ACCOUNT_DISABLED)


async def _referrer_for(session: AsyncSession, invite_code: str | None) -> User | None:
    # Checked before anything else and whether or not the phone is registered, so a bad invite
    # code gets the same answer for every phone and reveals nothing about registration.
    if not invite_code:
        return None
    return await users_service.find_referrer(session, invite_code)


def _login_windows(parts: AccountParts, account: str, client_ip: str) -> Windows:
    """The back-off windows of a login attempt on ``account``: from this address, and from every
    address together. Shared by password guesses and TOTP code guesses on any login path."""
    s = parts.settings
    return [
        (parse_limits(s.login_failure_limits), ("login-account-ip", account, client_ip)),
        (parse_limits(s.login_failure_limits_per_account), ("login-account", account)),
    ]


async def _totp_after(
    session: AsyncSession, parts: AccountParts, cipher: EnvelopeCipher, user: User, code: str | None, client: ClientInfo
) -> bool:
    """The second factor after an SMS or WeChat login, whose first factor spends no unit of the
    password windows: an account with TOTP pays one for the attempt, so that codes cannot be
    guessed faster through these paths than through the password's."""
    if user.totp_enabled_at is not None:
        await parts.limiter.hit_all(_login_windows(parts, user.phone or f"id:{user.id}", client.ip or "unknown"))
    return await totp.second_factor(session, cipher, user, code)


async def login_with_sms(
    session: AsyncSession,
    parts: AccountParts,
    cipher: EnvelopeCipher,
    *,
    phone: str,
    code: str,
    invite_code: str | None,
    client: ClientInfo,
    totp_code: str | None = None,
) -> LoginResult:
    referrer = await _referrer_for(session, invite_code)
    await sms_codes.verify_code(parts, phone=phone, purpose=CodePurpose.LOGIN, code=code)
    user, created = await users_service.get_or_create_by_phone(
        session, phone, policy=SignupPolicy.of(parts.settings), referrer=referrer
    )
    _ensure_active(user)
    mfa = await _totp_after(session, parts, cipher, user, totp_code, client)
    pair = await tokens.start_session(session, parts, user, method="sms", client=client, mfa=mfa)
    AUTH_EVENTS.labels("login_sms", "registered" if created else "ok").inc()
    return LoginResult(pair, user, created)


async def login_with_password(
    session: AsyncSession,
    parts: AccountParts,
    cipher: EnvelopeCipher,
    *,
    phone: str,
    password: str,
    client: ClientInfo,
    totp_code: str | None = None,
) -> LoginResult:
    """Every attempt spends a unit of its windows, all or none, atomically (so guessing is bounded
    exactly however many processes serve it): the address's, the account's from this address
    (progressive, 5/min, 10/h, 20/day by default) and the account's from every address (a much
    higher ceiling). A stranger's failures therefore fill the windows of the stranger's address,
    not the owner's: the owner still logs in from anywhere else. An account with TOTP also needs
    a fresh code (``totp_code``), checked after the password in the same attempt: a wrong code
    costs what a wrong password does."""
    client_ip = client.ip or "unknown"
    windows = [
        (parse_limits(parts.settings.login_limit_per_ip), ("login-ip", client_ip)),
        *_login_windows(parts, phone, client_ip),
    ]
    await parts.limiter.hit_all(windows)
    user = await users_repo.get_by_phone(session, phone)
    if not await verify_password(password, user.password_hash if user else None) or user is None:
        AUTH_EVENTS.labels("login_password", "failed").inc()
        raise AppError(ErrorCode.AUTH_INVALID_CREDENTIALS)
    _ensure_active(user)
    mfa = await totp.second_factor(session, cipher, user, totp_code)
    # Only this address's back-off is forgiven: the ceiling keeps counting a guesser elsewhere.
    await parts.limiter.clear(parse_limits(parts.settings.login_failure_limits), "login-account-ip", phone, client_ip)
    pair = await tokens.start_session(session, parts, user, method="password", client=client, mfa=mfa)
    AUTH_EVENTS.labels("login_password", "ok").inc()
    return LoginResult(pair, user, False)


async def login_with_wechat(
    session: AsyncSession,
    parts: AccountParts,
    cipher: EnvelopeCipher,
    *,
    app: WeChatApp,
    code: str,
    invite_code: str | None,
    client: ClientInfo,
    state: str | None = None,
    totp_code: str | None = None,
) -> LoginResult:
    """A WeChat login from any of its apps; the website's carries the ``state`` we issued for it."""
    identity = await _wechat_identity(parts, app, code, state)
    referrer = await _referrer_for(session, invite_code)
    user, created = await users_wechat.get_or_create(
        session,
        parts.session_factory,
        app,
        identity.openid,
        identity.unionid,
        policy=SignupPolicy.of(parts.settings),
        referrer=referrer,
    )
    _ensure_active(user)
    mfa = await _totp_after(session, parts, cipher, user, totp_code, client)
    method = "wechat" if app is WeChatApp.MINIPROGRAM else f"wechat_{app.value}"
    pair = await tokens.start_session(session, parts, user, method=method, client=client, mfa=mfa)
    AUTH_EVENTS.labels(f"login_{method}", "registered" if created else "ok").inc()
    return LoginResult(pair, user, created)


async def link_wechat(
    session: AsyncSession,
    parts: AccountParts,
    user: User,
    *,
    app: WeChatApp,
    code: str,
    state: str | None,
    proof: Proof,
) -> None:
    """Link the WeChat user behind ``code`` to the logged-in account, which first proves to be its
    holder now: a stolen access token must not be able to add the thief's WeChat as a way in."""
    await reauth.confirm_identity(session, parts, user, CodePurpose.LINK_WECHAT, proof)
    identity = await _wechat_identity(parts, app, code, state)
    if not await users_wechat.link(session, user, app, identity.openid, identity.unionid):
        raise AppError(ErrorCode.WECHAT_ALREADY_BOUND)
    add_audit(
        session,
        actor_id=user.id,
        action="user.wechat_linked",
        target_type="user",
        target_id=str(user.id),
        reason=None,
        before=None,
        after={"app": app.value, "unionid_known": identity.unionid is not None},
    )
    await session.flush()
    log.info("wechat_linked", user_id=user.id, app=app.value)


async def _wechat_identity(parts: AccountParts, app: WeChatApp, code: str, state: str | None) -> WeChatIdentity:
    if app is WeChatApp.MINIPROGRAM:
        wechat = wechat_of(parts)
        with wechat_answers():
            session_info = await wechat.code2session(code)
        return WeChatIdentity(session_info.openid, session_info.unionid)
    oauth = oauth_of(parts, app)
    if app is WeChatApp.WEB:
        await consume_state(parts, state or "")
    with wechat_answers():
        return await oauth.exchange_code(code)


async def bind_phone_with_wechat(
    session: AsyncSession, parts: AccountParts, user: User, phone_code: str, proof: Proof, keep_session_id: str
) -> User:
    """Bind the phone WeChat vouches for (getPhoneNumber) to the logged-in user."""
    wechat = wechat_of(parts)
    await reauth.confirm_identity(session, parts, user, CodePurpose.CHANGE_PHONE, proof)
    with wechat_answers():
        phone_info = await wechat.get_phone_number(phone_code)
    try:
        phone = normalize_phone(phone_info.pure_phone_number)
    except ValueError as exc:
        raise AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": "code", "message": str(exc)}]) from exc
    return await _move_phone(session, user, phone, keep_session_id)


async def bind_phone_with_sms(
    session: AsyncSession, parts: AccountParts, user: User, phone: str, code: str, proof: Proof, keep_session_id: str
) -> User:
    """Bind ``phone`` (proved by ``code``, purpose bind_phone) to the logged-in user, who first
    proves to hold the account now (``proof``): a stolen access token alone must never be able to
    route the account's SMS login to another number."""
    await reauth.confirm_identity(session, parts, user, CodePurpose.CHANGE_PHONE, proof)
    await sms_codes.verify_code(parts, phone=phone, purpose=CodePurpose.BIND_PHONE, code=code)
    return await _move_phone(session, user, phone, keep_session_id)


async def _move_phone(session: AsyncSession, user: User, phone: str, keep_session_id: str) -> User:
    """Set the phone; when it replaces another, every other session ends and the old number is
    told, so an owner whose session was stolen hears of it and the thief is logged out."""
    old_phone = user.phone
    user = await users_service.set_phone(session, user, phone)
    if old_phone is not None and old_phone != phone:
        await tokens.revoke_all(session, user.id, "phone_changed", keep_session_id=keep_session_id)
        notices.notify_phone_changed(session, old_phone=old_phone, new_phone=phone)
        add_audit(
            session,
            actor_id=user.id,
            action="user.phone_changed",
            target_type="user",
            target_id=str(user.id),
            reason=None,
            before={"phone": mask_phone(old_phone)},
            after={"phone": mask_phone(phone)},
        )
        await session.flush()
    log.info("phone_bound", user_id=user.id, replaced=old_phone is not None and old_phone != phone)
    return user


async def change_password(
    session: AsyncSession,
    parts: AccountParts,
    user: User,
    *,
    old_password: str | None,
    new_password: str,
    current_session_id: str,
) -> int:
    """Set or change the password; every other session is revoked at once. Returns how many."""
    if user.password_hash:
        limits = parse_limits(parts.settings.login_failure_limits)
        await parts.limiter.hit(limits, "password-change", str(user.id))
        if old_password is None or not await verify_password(old_password, user.password_hash):
            raise AppError(ErrorCode.AUTH_INVALID_CREDENTIALS)
    user.password_hash = await hash_password(new_password)
    user.password_changed_at = utcnow()
    revoked = await tokens.revoke_all(session, user.id, "password_changed", keep_session_id=current_session_id)
    await session.flush()
    return revoked


async def reset_password(
    session: AsyncSession, parts: AccountParts, *, phone: str, code: str, new_password: str
) -> None:
    """Forgot-password: the SMS code proves the phone; every session of the account is revoked.
    An unregistered phone fails exactly like a wrong code."""
    await sms_codes.verify_code(parts, phone=phone, purpose=CodePurpose.RESET_PASSWORD, code=code)
    user = await users_repo.get_by_phone(session, phone)
    if user is None:
        raise AppError(ErrorCode.AUTH_CODE_INVALID)
    _ensure_active(user)
    user.password_hash = await hash_password(new_password)
    user.password_changed_at = utcnow()
    await tokens.revoke_all(session, user.id, "password_reset")
    # Proof of the phone: the owner starts afresh everywhere.
    await parts.limiter.clear(parse_limits(parts.settings.login_failure_limits_per_account), "login-account", phone)
    await session.flush()
