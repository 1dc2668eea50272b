"""DTOs of account deletion and export (the person's right to delete and to a copy)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wardrobe.core.openapi import server_check
from wardrobe.core.schemas import InputModel

_PROOFS = ("code", "password", "wechat_code")
_FITS = "only a kind of proof the account has: a phone, a password or a WeChat login"


class AccountDeletion(InputModel):
    """Proof that the person deleting the account holds it now, beyond the access token: exactly
    one of an SMS code sent to the account's phone (purpose ``delete_account``), the password, or
    — for an account with neither — a fresh ``wx.login`` code of the same WeChat user."""

    model_config = ConfigDict(
        extra="forbid",
        # Exactly one of them is a string (the others absent or null).
        json_schema_extra={
            "oneOf": [{"required": [name], "properties": {name: {"type": "string"}}} for name in _PROOFS]
        },
    )

    code: str | None = Field(
        default=None, pattern=r"^[0-9]{6}$", examples=["123456"], json_schema_extra=server_check(_FITS)
    )
    password: str | None = Field(default=None, min_length=1, max_length=1024, json_schema_extra=server_check(_FITS))
    wechat_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="a fresh wx.login code",
        json_schema_extra=server_check(_FITS),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AccountDeletion:
        given = [name for name in _PROOFS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of code, password, wechat_code")
        return self


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
