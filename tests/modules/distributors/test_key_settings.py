"""Which key manager the settings build, and what production refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.fixtures.settings import production_settings
from wardrobe.modules.crypto.factory import build_key_manager
from wardrobe.modules.crypto.keys import LocalKeyManager
from wardrobe.modules.crypto.tencent_kms import TencentKmsKeyManager
from wardrobe.settings import Settings

REAL = production_settings()


def test_the_key_file_defaults_to_the_var_dir(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path)
    assert settings.kms_local_key_file == tmp_path / "master-keys.json"
    keys = build_key_manager(settings)
    assert isinstance(keys, LocalKeyManager)
    assert not settings.kms_local_key_file.exists()  # created on first use only


async def test_production_refuses_the_key_file_and_an_unconfigured_kms() -> None:
    with pytest.raises(RuntimeError, match="KMS_BACKEND=local is for development only"):
        build_key_manager(Settings(_env_file=None, env="production", **REAL))
    with pytest.raises(ValidationError, match="WARDROBE_KMS_KEY_ID"):
        Settings(_env_file=None, env="production", kms_backend="tencent", **REAL)
    settings = Settings(
        _env_file=None,
        env="production",
        kms_backend="tencent",
        kms_key_id="5d3f0b0e-6a41-11ef-9b2a-525400d3a1f0",
        tencent_secret_id="AKID-x",
        tencent_secret_key="secret",
        **REAL,
    )
    keys = build_key_manager(settings)
    assert isinstance(keys, TencentKmsKeyManager)
    assert keys.current_key_ref() == "tencent:5d3f0b0e-6a41-11ef-9b2a-525400d3a1f0"
    await keys.aclose()
