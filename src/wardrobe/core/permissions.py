"""Role-based permissions: roles map to permission sets; routes ask for permissions."""

from __future__ import annotations

from enum import StrEnum

from wardrobe.models import Role


class Permission(StrEnum):
    PROFILE_SELF = "profile:self"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"  # create accounts, change roles (admins only)
    USERS_BAN = "users:ban"  # ban and unban; a ban ends every session and socket
    SESSIONS_REVOKE = "sessions:revoke"
    AUDIT_READ = "audit:read"
    QUOTA_ADJUST = "quota:adjust"
    CATALOG_READ = "catalog:read"  # features, pipelines, providers, plans as configured
    CATALOG_WRITE = "catalog:write"  # edit features and pipelines (admins only)
    CATALOG_SWITCH = "catalog:switch"  # kill switches of features and providers
    PLANS_MANAGE = "plans:manage"  # what is sold and at what price (admins only)
    ORDERS_READ = "orders:read"
    ORDERS_REFUND = "orders:refund"
    TASKS_READ = "tasks:read"  # any user's tasks, with internal errors and vendor ids
    TASKS_ACT = "tasks:act"  # cancel with refund, retry at no charge
    STATS_READ = "stats:read"
    EXPORTS_READ = "exports:read"  # orders and ledger as CSV for accounting
    PROVIDERS_MANAGE = "providers:manage"  # vendor accounts: where secrets go (admins only)
    DISTRIBUTORS_REVIEW = "distributors:review"  # list, approve, reject applications (masked ID numbers)
    DISTRIBUTORS_REVEAL = "distributors:reveal"  # decrypt an applicant's full ID number (admins only; audited)


_USER = frozenset({Permission.PROFILE_SELF})
# Operators run the day: they read everything and act on users, tasks and orders. What is sold,
# how features are built, where vendor secrets go and who holds which role stay with admins.
_OPERATOR = _USER | {
    Permission.USERS_READ,
    Permission.USERS_BAN,
    Permission.SESSIONS_REVOKE,
    Permission.AUDIT_READ,
    Permission.QUOTA_ADJUST,
    Permission.CATALOG_READ,
    Permission.CATALOG_SWITCH,
    Permission.ORDERS_READ,
    Permission.ORDERS_REFUND,
    Permission.TASKS_READ,
    Permission.TASKS_ACT,
    Permission.STATS_READ,
    Permission.EXPORTS_READ,
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
