"""Vendor accounts configured by operators in the database.

A provider (a vendor adapter, registered by slug) may run on several accounts: each with its own
credentials, endpoint, concurrency and rate. The engine picks, for every call, the usable account
with the most free slots (``slots.try_acquire_account``), so the load spreads and no account goes
over its own limit; a vendor job stays on the account that created it (``TaskStep.account``).
Without any account in the database a provider runs as before, on the credentials from the
environment and ``WARDROBE_PROVIDER_CONCURRENCY``.

Secrets are never stored in clear and never leave this module but towards the vendor:

- ``secret_env``: the name of an environment variable holding it. Only names under
  ``WARDROBE_VENDOR_KEY_`` are accepted, so an operator cannot send, say, the JWT secret to an
  endpoint of their choosing.
- ``secret_sealed``: the secret under AES-256-GCM (``cryptography``'s AEAD; a random 96-bit nonce
  per seal) with the deployment's ``WARDROBE_PROVIDER_SECRETS_KEY``, the provider and account name
  as associated data — a sealed value copied onto another account does not open.

Endpoints are restricted to ``WARDROBE_PROVIDER_ENDPOINT_HOSTS`` for the same reason: an account's
secret goes wherever its endpoint points.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache
from wardrobe.core.logging import get_logger
from wardrobe.models import ProviderAccount
from wardrobe.settings import parse_provider_secrets_key

log = get_logger("wardrobe.providers")
ACCOUNTS = "provider_accounts"  # cache namespace
SECRET_ENV_PREFIX = "WARDROBE_VENDOR_KEY_"  # noqa: S105 - a variable name prefix, not a secret
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SEALED_PREFIX = "v1."


class AccountConfigError(ValueError):
    """An account an operator described cannot be used as it is (the message says why)."""


@dataclass(frozen=True, slots=True)
class Account:
    """What an adapter needs to call its vendor as one account. The secret is kept out of repr."""

    provider: str
    name: str
    concurrency: int
    secret: str = field(default="", repr=False)
    key_id: str | None = None
    endpoint: str | None = None
    rate: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True

    @property
    def key(self) -> str:
        """Its name in slots, rate windows and the circuit breaker: ``provider#name``."""
        return f"{self.provider}#{self.name}"


class SecretBox:
    """Seals account secrets at rest with AES-256-GCM (a 32-byte key, base64 in the setting)."""

    def __init__(self, key_b64: str) -> None:
        self._aead: AESGCM | None = None
        if key_b64:
            key = parse_provider_secrets_key(key_b64)
            self._aead = AESGCM(key)

    @property
    def available(self) -> bool:
        return self._aead is not None

    def seal(self, plain: str, *, provider: str, name: str) -> str:
        if self._aead is None:
            raise AccountConfigError("storing a secret needs WARDROBE_PROVIDER_SECRETS_KEY; use secret_env instead")
        nonce = secrets.token_bytes(12)  # random 96-bit nonce: at our volumes a repeat is negligible
        sealed = self._aead.encrypt(nonce, plain.encode(), _aad(provider, name))
        return _SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, provider: str, name: str) -> str:
        if self._aead is None:
            raise AccountConfigError("WARDROBE_PROVIDER_SECRETS_KEY is not set")
        if not sealed.startswith(_SEALED_PREFIX):
            raise AccountConfigError("unknown sealed secret format")
        try:
            raw = base64.urlsafe_b64decode(sealed.removeprefix(_SEALED_PREFIX))
            return self._aead.decrypt(raw[:12], raw[12:], _aad(provider, name)).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise AccountConfigError("the sealed secret does not open with this key and account") from exc


def _aad(provider: str, name: str) -> bytes:
    return f"wardrobe.provider_account:{provider}:{name}".encode()


def check_secret_env(name: str) -> str:
    if not name.startswith(SECRET_ENV_PREFIX) or not re.fullmatch(r"[A-Z0-9_]{1,128}", name):
        raise AccountConfigError(f"secret_env must be an environment variable named {SECRET_ENV_PREFIX}*")
    return name


def check_endpoint(url: str, allowed_hosts: Sequence[str], *, https_only: bool) -> str:
    """An endpoint on an allowed host (``.example.com`` allows its subdomains), https unless
    told otherwise (development peers), with no credentials, query or fragment in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or (https_only and parts.scheme != "https"):
        raise AccountConfigError("endpoint must be an https:// URL")
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        raise AccountConfigError("endpoint must be a plain URL: scheme, host, optional port and path")
    if not any(host == h or (h.startswith(".") and host.endswith(h)) for h in (a.lower() for a in allowed_hosts)):
        raise AccountConfigError(f"endpoint host {host!r} is not in WARDROBE_PROVIDER_ENDPOINT_HOSTS")
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class _Known:
    accounts: dict[str, list[Account]]  # usable here (secret readable), enabled or not
    configured: frozenset[str]  # providers with any account row


class AccountDirectory:
    """Every process's view of the accounts, cached and dropped on every edit (broadcast)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cache: Cache,
        box: SecretBox,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._sessions = sessions
        self._cache = cache
        self.box = box
        self._environ = environ if environ is not None else os.environ

    async def _all(self) -> _Known:
        async def load() -> _Known:
            async with self._sessions() as session:
                rows = list(await session.scalars(select(ProviderAccount).order_by(ProviderAccount.id)))
            known = _Known(accounts={}, configured=frozenset(row.provider for row in rows))
            for row in rows:
                account = self._resolve(row)
                if account is not None:
                    known.accounts.setdefault(row.provider, []).append(account)
            return known

        return await self._cache.get(ACCOUNTS, "all", load) or _Known({}, frozenset())

    def _resolve(self, row: ProviderAccount) -> Account | None:
        try:
            if row.secret_sealed:
                secret = self.box.open(row.secret_sealed, provider=row.provider, name=row.name)
            elif row.secret_env:
                secret = self._environ.get(check_secret_env(row.secret_env), "")
                if not secret:
                    raise AccountConfigError(f"{row.secret_env} is not set in this process")
            else:
                secret = ""
        except AccountConfigError as exc:
            # Unusable here (a missing variable, a key that does not open it): skipped, loudly.
            log.error("provider_account_unusable", provider=row.provider, account=row.name, reason=str(exc))
            return None
        return Account(
            provider=row.provider,
            name=row.name,
            concurrency=row.concurrency,
            secret=secret,
            key_id=row.key_id,
            endpoint=row.endpoint,
            rate=row.rate,
            options=dict(row.options or {}),
            enabled=row.enabled,
        )

    async def usable(self, provider: str) -> list[Account]:
        """The enabled accounts of ``provider`` whose secret this process can read ([] = none
        configured: the provider runs on its settings)."""
        return [a for a in (await self._all()).accounts.get(provider, []) if a.enabled]

    async def configured(self, provider: str) -> bool:
        """Whether ``provider`` runs on database accounts at all (even if none is usable now): then
        it never falls back to the credentials from the environment."""
        return provider in (await self._all()).configured

    async def get(self, provider: str, name: str) -> Account | None:
        """An account by name, enabled or not: a job already at the vendor finishes on its account."""
        return next((a for a in (await self._all()).accounts.get(provider, []) if a.name == name), None)

    def invalidate(self) -> None:
        self._cache.invalidate(ACCOUNTS)
