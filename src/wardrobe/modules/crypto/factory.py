"""The key manager the settings choose."""

from __future__ import annotations

from wardrobe.modules.crypto.keys import KeyManager, LocalKeyFile, LocalKeyManager
from wardrobe.settings import Environment, Settings


def build_key_manager(settings: Settings) -> KeyManager:
    """The local key file outside production, Tencent Cloud KMS where configured. Production
    refuses the key file: its master keys sit on the same disk as the database backups."""
    if settings.kms_backend == "tencent":
        from wardrobe.modules.crypto.tencent_kms import TencentKmsKeyManager

        return TencentKmsKeyManager(
            key_id=settings.kms_key_id,
            secret_id=settings.tencent_secret_id,
            secret_key=settings.tencent_secret_key.get_secret_value(),
            region=settings.kms_region,
            endpoint=settings.kms_endpoint or None,
            scheme=settings.kms_scheme,
            timeout=settings.kms_timeout_seconds,
        )
    if settings.env is Environment.PRODUCTION:
        raise RuntimeError("WARDROBE_KMS_BACKEND=local is for development only; production needs tencent")
    return LocalKeyManager(LocalKeyFile(settings.kms_local_key_file))
