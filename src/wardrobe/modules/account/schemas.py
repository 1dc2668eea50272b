"""DTOs of account deletion and export (the person's right to delete and to a copy)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from wardrobe.modules.auth.schemas import FreshProof


class AccountDeletion(FreshProof):
    """Proof that the person deleting the account holds it now, beyond the access token: exactly
    one of an SMS code sent to the account's phone (purpose ``delete_account``), the password, or
    — for an account with neither — a fresh ``wx.login`` code of the same WeChat user."""


class AccountDeleted(BaseModel):
    deleted: bool
    tasks_canceled: int = Field(description="Queued tasks canceled and refunded at once")
    tasks_stopping: int = Field(description="Running tasks asked to stop; each is refunded when it stops")
    sessions_revoked: int


class AccountExport(BaseModel):
    """The account's data. Lists are complete (streamed, never truncated), newest first."""

    exported_at: str
    profile: dict[str, Any]
    quota: dict[str, Any]
    invitations: dict[str, Any]
    distributor_applications: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
