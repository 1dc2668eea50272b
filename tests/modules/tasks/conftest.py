"""What several task test files run against."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.fixtures.auth import login_as
from tests.modules.account.erasure_flows import held_feature, thumbnail_feature


@pytest.fixture
async def files_api(api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch) -> Api:
    """Tasks that store files and tasks that wait: ``thumb`` (one local step that stores a result
    image) and ``hold`` (a fault-vendor step that waits while the vendor holds its key), run in
    process, one task of a user at a time."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(
        extra_providers=["tests.providers.fault:build"],
        worker_in_process=True,
        task_heartbeat_seconds=0.1,
        user_max_running_tasks=1,
    )
    admin = await login_as(api, "admin")
    await thumbnail_feature(api, admin)
    await held_feature(api, admin)
    return api
