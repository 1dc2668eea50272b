// What each staff role may do, as src/wardrobe/core/permissions.py grants it (a test holds the two
// equal). The console hides what a role cannot use; the API's 403 stays the real guard.
import { currentSession } from "./api.js";

export const ROLE_PERMISSIONS = {
  "operator": [
    "audit:read",
    "catalog:read",
    "catalog:switch",
    "distributors:review",
    "exports:read",
    "orders:read",
    "orders:refund",
    "profile:self",
    "quota:adjust",
    "sessions:revoke",
    "stats:read",
    "tasks:act",
    "tasks:read",
    "users:ban",
    "users:read"
  ],
  "admin": [
    "audit:read",
    "catalog:read",
    "catalog:switch",
    "catalog:write",
    "distributors:reveal",
    "distributors:review",
    "exports:read",
    "orders:read",
    "orders:refund",
    "plans:manage",
    "profile:self",
    "providers:manage",
    "quota:adjust",
    "sessions:revoke",
    "stats:read",
    "tasks:act",
    "tasks:read",
    "users:ban",
    "users:read",
    "users:write"
  ]
};

export const STAFF_ROLES = Object.keys(ROLE_PERMISSIONS);

export function isStaff(role) {
  return STAFF_ROLES.includes(role);
}

/** Whether the signed-in person's role holds ``permission`` (e.g. "orders:refund"). */
export function can(permission) {
  const role = currentSession()?.user?.role;
  return Boolean(role && ROLE_PERMISSIONS[role]?.includes(permission));
}
