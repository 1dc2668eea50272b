"""Role-based permissions: roles map to permission sets; routes ask for permissions."""

from __future__ import annotations

from enum import StrEnum

from wardrobe.models import Role


class Permission(StrEnum):
    PROFILE_SELF = "profile:self"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    SESSIONS_REVOKE = "sessions:revoke"
    AUDIT_READ = "audit:read"
    QUOTA_ADJUST = "quota:adjust"
    CATALOG_WRITE = "catalog:write"
    ORDERS_READ = "orders:read"
    ORDERS_REFUND = "orders:refund"
    PROVIDERS_MANAGE = "providers:manage"  # vendor accounts: where secrets go (admins only)
    DISTRIBUTORS_REVIEW = "distributors:review"  # list, approve, reject applications (masked ID numbers)
    DISTRIBUTORS_REVEAL = "distributors:reveal"  # decrypt an applicant's full ID number (admins only; audited)


_USER = frozenset({Permission.PROFILE_SELF})
_OPERATOR = _USER | {
    Permission.USERS_READ,
    Permission.AUDIT_READ,
    Permission.CATALOG_WRITE,
    Permission.ORDERS_READ,
    Permission.DISTRIBUTORS_REVIEW,
}
_ADMIN = frozenset(Permission)

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    Role.USER.value: _USER,
    Role.DISTRIBUTOR.value: _USER,
    Role.OPERATOR.value: _OPERATOR,
    Role.ADMIN.value: _ADMIN,
}


def roles_with(permission: Permission) -> list[str]:
    return sorted(role for role, granted in ROLE_PERMISSIONS.items() if permission in granted)


def has_permission(role: str, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
