"""The environments and SMS backends, the development defaults production refuses, and the keys
settings carry as base64."""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum

DEFAULT_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0000"  # noqa: S105 - refused in production
DEFAULT_CODE_PEPPER = "dev-only-insecure-code-pepper-change-me-000"
DEFAULT_STORAGE_SIGNING_KEY = "dev-only-insecure-storage-signing-key-0000"
DEFAULT_WEBHOOK_SECRET_KEY = "dev-only-insecure-webhook-secret-key-00000"  # noqa: S105 - refused in production
DEFAULT_CALLBACK_SECRET = "dev-only-insecure-vendor-callback-secret-00"  # noqa: S105 - refused in production


def parse_provider_secrets_key(key_b64: str) -> bytes:
    """The AES-256 key of WARDROBE_PROVIDER_SECRETS_KEY (base64 of 32 bytes); a ValueError says
    what is wrong with it. Checked when settings load, used where account secrets are sealed."""
    try:
        key = base64.b64decode(key_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError("WARDROBE_PROVIDER_SECRETS_KEY must be base64") from exc
    if len(key) != 32:
        raise ValueError("WARDROBE_PROVIDER_SECRETS_KEY must be 32 bytes (base64 of 32 random bytes)")
    return key


def parse_backup_key(key_b64: str) -> bytes:
    """The AES-256 key of WARDROBE_BACKUP_ENCRYPTION_KEY (base64 of 32 bytes)."""
    try:
        key = base64.b64decode(key_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError("WARDROBE_BACKUP_ENCRYPTION_KEY must be base64") from exc
    if len(key) != 32:
        raise ValueError("WARDROBE_BACKUP_ENCRYPTION_KEY must be 32 bytes (base64 of 32 random bytes)")
    return key


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SmsBackend(StrEnum):
    CONSOLE = "console"
    TENCENT = "tencent"
