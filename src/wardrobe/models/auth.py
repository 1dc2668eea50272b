"""Authentication state: login sessions (token families), refresh tokens, SMS codes, TOTP secrets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, false
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class AuthSession(Base):
    """One login on one device: the family of every refresh token rotated from it."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user_active", "user_id", "revoked_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    method: Mapped[str] = mapped_column(String(16))
    client: Mapped[str | None] = mapped_column(String(128))
    # Shown to the owner in their list of sessions: a coarse device name from the User-Agent, and
    # the last address it was used from, masked when stored (the full address is not kept).
    device: Mapped[str | None] = mapped_column(String(64))
    ip_masked: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
    # Opened with a TOTP code (or stepped up by enabling TOTP in it): what admin routes ask of
    # admins where WARDROBE_ADMIN_TOTP_REQUIRED holds. Read with the session on every request.
    mfa: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("auth_sessions.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SmsCode(Base):
    """A sent verification code, stored only as a keyed hash."""

    __tablename__ = "sms_codes"
    __table_args__ = (Index("ix_sms_codes_lookup", "phone", "purpose", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    phone: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserTotp(Base):
    """A user's TOTP secret, sealed like ID numbers (modules/crypto: its own data key, bound to the
    user id), pending until a code proves the authenticator holds it; ``users.totp_enabled_at``
    says whether it is in force. ``last_step`` is the time step of the last code accepted: only a
    later one is accepted (a conditional UPDATE), so a code cannot be replayed within its window."""

    __tablename__ = "user_totp"
    __table_args__ = (Index("ix_user_totp_key_ref", "secret_key_ref", "user_id"),)

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), primary_key=True, autoincrement=False)
    secret_wrapped_key: Mapped[str] = mapped_column(String(1024))
    secret_key_ref: Mapped[str] = mapped_column(String(160))
    secret_nonce: Mapped[bytes] = mapped_column(LargeBinary())
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary())
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
