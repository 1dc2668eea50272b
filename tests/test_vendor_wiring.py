"""Each vendor is registered from settings alone, and production refuses an SCF set-up whose
callbacks could not be verified."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wardrobe.app import build_providers
from wardrobe.core.db import create_engine, create_session_factory
from wardrobe.modules.providers.base import AsyncProvider, SyncProvider
from wardrobe.modules.storage.deps import build_storage
from wardrobe.settings import Environment, Settings


async def test_every_configured_vendor_is_registered(tmp_path: object) -> None:
    settings = Settings(
        _env_file=None,
        env=Environment.TEST,
        database_url="sqlite+aiosqlite:///:memory:",
        storage_local_root=tmp_path,
        tencent_secret_id="AKIDtest",
        tencent_secret_key="test-secret",
        runninghub_api_key="wardrobe-test-runninghub-key-001",
        runninghub_workflows={
            "outfit_change": {"id": "1", "nodes": {"person": ["12", "image"]}, "uploads": ["person"]}
        },
        hunyuan_enabled=True,
        tencent_imaging_enabled=True,
        scf_enabled=True,
        scf_functions={"restore": "photo-restore"},
        scf_callback_key="k" * 32,
        vendor_callback_base_url="https://api.wardrobe.test",
    )
    engine = create_engine(settings)
    try:
        registry = build_providers(settings, build_storage(settings), create_session_factory(engine))
    finally:
        await engine.dispose()
    assert set(registry.slugs()) == {"local", "instant", "runninghub", "hunyuan", "tencent_imaging", "scf"}
    assert isinstance(registry.get("runninghub"), AsyncProvider)
    assert isinstance(registry.get("scf"), AsyncProvider)
    assert isinstance(registry.get("tencent_imaging"), SyncProvider)
    runninghub = registry.get("runninghub")
    assert runninghub is not None
    assert runninghub.supports("outfit_change")
    assert not runninghub.supports("model_photo")  # only what is configured


def test_nothing_but_local_providers_without_vendor_settings(tmp_path: object) -> None:
    settings = Settings(_env_file=None, env=Environment.TEST, storage_local_root=tmp_path)
    assert build_providers(settings, build_storage(settings)).slugs() == ["instant", "local"]


def test_production_refuses_scf_without_a_callback_key_or_https_callbacks() -> None:
    real = {
        "jwt_secret": "x" * 48,
        "sms_code_pepper": "p" * 48,
        "storage_signing_key": "s" * 48,
        "vendor_callback_secret": "v" * 48,
        "sms_backend": "tencent",
        "sms_debug_codes": False,
        "seed_demo_data": False,
    }
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, env="production", scf_enabled=True, vendor_callback_base_url="http://x", **real)  # type: ignore[arg-type]
    assert "SCF_CALLBACK_KEY" in str(info.value)
    assert "VENDOR_CALLBACK_BASE_URL" in str(info.value)
