"""Operators' edits of provider accounts: checked, sealed, audited, broadcast.

Creating or changing an account is an admin's job (``providers:manage``): it decides where a
secret is sent. Operators with catalog rights see the accounts (never a secret) in the provider
view. Every edit drops every process's cached accounts once it commits.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.audit import add_audit
from wardrobe.core.db import after_commit
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.openapi import server_check
from wardrobe.core.ratelimit import POLICY_PATTERN, parse_policy
from wardrobe.core.schemas import InputModel
from wardrobe.models import ProviderAccount
from wardrobe.modules.providers.accounts import (
    NAME,
    AccountConfigError,
    AccountDirectory,
    check_endpoint,
    check_secret_env,
)
from wardrobe.modules.providers.base import ProviderRegistry
from wardrobe.settings import Environment, Settings

Option = str | int | float | bool


class _Common(InputModel):
    enabled: bool | None = None
    key_id: str | None = Field(default=None, min_length=1, max_length=128)
    secret: SecretStr | None = Field(default=None, min_length=1, max_length=512)
    secret_env: str | None = Field(default=None, max_length=128)
    endpoint: str | None = Field(default=None, max_length=255)
    concurrency: int | None = Field(default=None, ge=1, le=1000)
    rate: str | None = Field(
        default=None, max_length=64, json_schema_extra={"pattern": POLICY_PATTERN}, examples=["20/second"]
    )
    options: dict[str, Option] | None = Field(default=None, max_length=20)
    note: str | None = Field(default=None, max_length=500)
    reason: str = Field(min_length=2, max_length=500)  # kept in the audit log

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value:
            try:
                parse_policy(value)
            except ValueError as exc:
                raise ValueError("rate must read like '20/second' or '600/minute'") from exc
        return value or None


class AccountCreate(_Common):
    """A new account: where it calls, as whom, and how much at once."""

    provider: str = Field(
        min_length=1,
        max_length=32,
        json_schema_extra=server_check(
            "a provider of this deployment that runs on accounts (GET /api/v1/admin/providers)"
        ),
    )
    name: str = Field(pattern=NAME.pattern)
    concurrency: int = Field(ge=1, le=1000)


class AccountPatch(_Common):
    """Only the fields given change. A new ``secret`` or ``secret_env`` replaces the old one."""


def account_view(row: ProviderAccount) -> dict[str, Any]:
    """What anyone may see of an account: where the secret comes from, never the secret."""
    return {
        "id": row.id,
        "provider": row.provider,
        "name": row.name,
        "enabled": row.enabled,
        "key_id": _masked(row.key_id),
        "secret_source": "sealed" if row.secret_sealed else "env" if row.secret_env else "none",
        "secret_env": row.secret_env,
        "endpoint": row.endpoint,
        "concurrency": row.concurrency,
        "rate": row.rate,
        "options": row.options,
        "note": row.note,
        "updated_at": row.updated_at,
    }


def _masked(key_id: str | None) -> str | None:
    if not key_id:
        return None
    return key_id[:4] + "*" * max(4, len(key_id) - 8) + key_id[-4:] if len(key_id) > 8 else "****"


def _invalid(field: str, message: str) -> AppError:
    return AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": field, "message": message}])


def _apply(row: ProviderAccount, body: _Common, settings: Settings, directory: AccountDirectory, actor_id: int) -> None:
    if body.secret is not None and body.secret_env is not None:
        raise _invalid("secret", "give either secret or secret_env, not both")
    try:
        if body.secret is not None:
            row.secret_sealed = directory.box.seal(body.secret.get_secret_value(), provider=row.provider, name=row.name)
            row.secret_env = None
        elif body.secret_env is not None:
            row.secret_env = check_secret_env(body.secret_env)
            row.secret_sealed = None
    except AccountConfigError as exc:
        raise _invalid("secret_env" if body.secret_env is not None else "secret", str(exc)) from None
    if body.endpoint is not None:
        try:
            row.endpoint = check_endpoint(
                body.endpoint,
                settings.provider_endpoint_hosts,
                https_only=settings.env is Environment.PRODUCTION,
            )
        except AccountConfigError as exc:
            raise _invalid("endpoint", str(exc)) from None
    for name in ("enabled", "key_id", "concurrency", "rate", "options", "note"):
        value = getattr(body, name)
        if value is not None:
            setattr(row, name, value)
    row.updated_by = actor_id


async def create_account(
    session: AsyncSession,
    registry: ProviderRegistry,
    settings: Settings,
    directory: AccountDirectory,
    body: AccountCreate,
    actor_id: int,
) -> ProviderAccount:
    provider = registry.get(body.provider)
    if provider is None or not getattr(provider, "accepts_accounts", False):
        raise _invalid("provider", f"{body.provider!r} is not a provider that runs on accounts here")
    if body.secret is None and body.secret_env is None:
        raise _invalid("secret", "give the secret, or secret_env naming the variable that holds it")
    row = ProviderAccount(
        provider=body.provider, name=body.name, enabled=True, concurrency=body.concurrency, options={}, note=""
    )
    _apply(row, body, settings, directory, actor_id)
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        raise AppError(ErrorCode.CONFLICT, data={"name": body.name}) from None
    _audit(session, actor_id, "provider_account.create", row, body.reason)
    after_commit(session, directory.invalidate)
    return row


async def update_account(
    session: AsyncSession,
    settings: Settings,
    directory: AccountDirectory,
    account_id: int,
    body: AccountPatch,
    actor_id: int,
) -> ProviderAccount:
    row = await session.scalar(select(ProviderAccount).where(ProviderAccount.id == account_id).with_for_update())
    if row is None:
        raise AppError(ErrorCode.NOT_FOUND)
    _apply(row, body, settings, directory, actor_id)
    await session.flush()
    _audit(session, actor_id, "provider_account.update", row, body.reason)
    after_commit(session, directory.invalidate)
    return row


def _audit(session: AsyncSession, actor_id: int, action: str, row: ProviderAccount, reason: str) -> None:
    add_audit(
        session,
        actor_id=actor_id,
        action=action,
        target_type="provider_account",
        target_id=f"{row.provider}#{row.name}",
        reason=reason,
    )
