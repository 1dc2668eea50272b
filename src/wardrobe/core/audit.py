"""The audit trail: who did what to which record, what it was before and after, and why. Written in
the caller's transaction, so an action and its record commit (or roll back) together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Record an action. ``before``/``after`` hold only the fields the action changed (JSON values),
    never a secret or a full phone number: the log is read by every operator."""
    session.add(
        AuditLog(
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            reason=reason,
            before=dict(before) if before is not None else None,
            after=dict(after) if after is not None else None,
        )
    )
