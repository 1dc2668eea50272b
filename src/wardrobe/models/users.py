"""Accounts: users, invite-code pool, referrals, audit log."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class Role(StrEnum):
    USER = "user"
    DISTRIBUTOR = "distributor"
    OPERATOR = "operator"
    ADMIN = "admin"


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    # An erased account: an anonymous tombstone that keeps its orders and ledger for accounting.
    DELETED = "deleted"


class Gender(StrEnum):
    UNKNOWN = "unknown"
    MALE = "male"
    FEMALE = "female"


class WeChatApp(StrEnum):
    """The WeChat app a login came through: each has its own appid, so its own openids."""

    MINIPROGRAM = "miniprogram"
    WEB = "web"
    MOBILE = "app"


class User(Base):
    __tablename__ = "users"
    # Statistics: sign-ups per day.
    __table_args__ = (Index("ix_users_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE.value)
    nickname: Mapped[str | None] = mapped_column(String(32))
    avatar_url: Mapped[str | None] = mapped_column(String(512))
    gender: Mapped[str] = mapped_column(String(8), default=Gender.UNKNOWN.value)
    birthday: Mapped[date | None] = mapped_column(Date)
    bio: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(String(64))
    profile_completed: Mapped[bool] = mapped_column(Boolean, default=False)
    invite_code: Mapped[str] = mapped_column(String(16), unique=True)
    referrer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    wechat_openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    wechat_unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # TOTP in force since then (the sealed secret is in user_totp); None = password alone.
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_active(self) -> bool:
        return self.status == UserStatus.ACTIVE.value


class WeChatAccount(Base):
    """A user's WeChat Open Platform identity: the unionid shared by every app of the platform
    account, and the user's openid in the website and mobile apps (the mini program's openid is
    ``users.wechat_openid``, where WeChat Pay's JSAPI needs it). One row per user; each column is
    unique, so two first logins of one person on two clients at once still make one account: the
    second insert of the unionid fails and that login joins the first one's user."""

    __tablename__ = "wechat_accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), unique=True)
    unionid: Mapped[str | None] = mapped_column(String(64), unique=True)
    web_openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    app_openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InviteCodePool(Base):
    """Pre-generated unused invite codes, so registration never waits on code generation."""

    __tablename__ = "invite_code_pool"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Referral(Base):
    """Who invited whom; bound once at registration. Billing credits the reward later."""

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    referrer_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    referee_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), unique=True)
    invite_code: Mapped[str] = mapped_column(String(16))
    reward_status: Mapped[str] = mapped_column(String(16), default="pending")
    rewarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditLog(Base):
    """Operator and admin actions, with the reason they gave."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("ix_audit_logs_target", "target_type", "target_id", "created_at"),
        Index("ix_audit_logs_action", "action", "created_at"),
        Index("ix_audit_logs_created_at", "created_at"),
        # The audit-log reader filters by actor and pages newest first: (actor, time) serves both.
        Index("ix_audit_logs_actor", "actor_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(500))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
