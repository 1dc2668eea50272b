"""Each vendor is registered from settings alone, and production refuses an SCF set-up whose
callbacks could not be verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import Api
from tests.fixtures.auth import login_as, sms_login
from tests.fixtures.settings import production_settings
from tests.fixtures.tasks import balance, make_feature, step
from wardrobe.core.db import create_engine, create_session_factory
from wardrobe.modules.providers.base import AsyncProvider, SyncProvider
from wardrobe.modules.storage.deps import build_storage
from wardrobe.settings import Environment, Settings
from wardrobe.wiring import build_providers


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
    real = production_settings()
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, env="production", scf_enabled=True, vendor_callback_base_url="http://x", **real)
    assert "SCF_CALLBACK_KEY" in str(info.value)
    assert "VENDOR_CALLBACK_BASE_URL" in str(info.value)


async def test_the_moderation_settings_reach_task_creation(api_factory: Any, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("wardrobeforbiddenword\n", encoding="utf-8")
    api: Api = await api_factory(moderation_keywords_file=str(words), worker_in_process=True)
    admin = await login_as(api, "admin")
    await make_feature(
        api,
        admin,
        "echo",
        [step("only", provider="instant", action="passthrough", inputs={"prompt": "$inputs.prompt"})],
        {"r": "$steps.only.prompt"},
        form_schema={
            "type": "object",
            "additionalProperties": False,
            "required": ["prompt"],
            "properties": {"prompt": {"type": "string", "maxLength": 200}},
        },
    )
    user = await sms_login(api.client)
    before = await balance(api, user.user["id"])
    blocked = await api.client.post(
        "/api/v1/tasks",
        json={"feature": "echo", "inputs": {"prompt": "a coat with WARDROBEFORBIDDENWORD on it"}},
        headers=user.headers,
    )
    assert blocked.status_code == 422
    assert blocked.json()["code"] == "CONTENT_BLOCKED"
    assert "WARDROBEFORBIDDENWORD" not in blocked.text.upper()  # the user's words are not echoed
    assert await balance(api, user.user["id"]) == before
    fine = await api.client.post(
        "/api/v1/tasks", json={"feature": "echo", "inputs": {"prompt": "a linen coat"}}, headers=user.headers
    )
    assert fine.status_code == 202
