"""ORM models, imported together so Alembic sees the whole schema."""

from wardrobe.models.auth import AuthSession, RefreshToken, SmsCode
from wardrobe.models.base import Base
from wardrobe.models.billing import (
    HoldStatus,
    LedgerEntry,
    LedgerKind,
    Plan,
    PlanKind,
    QuotaAccount,
    QuotaHold,
)
from wardrobe.models.users import AuditLog, Gender, InviteCodePool, Referral, Role, User, UserStatus

__all__ = [
    "AuditLog",
    "AuthSession",
    "Base",
    "Gender",
    "HoldStatus",
    "InviteCodePool",
    "LedgerEntry",
    "LedgerKind",
    "Plan",
    "PlanKind",
    "QuotaAccount",
    "QuotaHold",
    "Referral",
    "RefreshToken",
    "Role",
    "SmsCode",
    "User",
    "UserStatus",
]
