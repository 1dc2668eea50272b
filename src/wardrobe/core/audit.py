"""The audit trail: who did what to which record, and why. Written in the caller's transaction, so
an action and its record commit (or roll back) together."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import AuditLog


def add_audit(
    session: AsyncSession,
    *,
    actor_id: int | None,
    action: str,
    target_type: str,
    target_id: str,
    reason: str | None,
) -> None:
    session.add(AuditLog(actor_id=actor_id, action=action, target_type=target_type, target_id=target_id, reason=reason))
