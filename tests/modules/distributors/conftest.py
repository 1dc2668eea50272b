"""Apps whose distributors' ID numbers are sealed by a local key file in a temporary folder, or by
the KMS service of the Tencent Cloud peer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import TEST_REGION, TEST_SECRET_ID, TEST_SECRET_KEY
from tests.peers.tencent_kms import TEST_KMS_KEY_ID


@pytest.fixture
def key_file_path(tmp_path: Path) -> Path:
    return tmp_path / "master-keys.json"


@pytest.fixture
async def local_api(api_factory: Any, key_file_path: Path) -> Api:
    api: Api = await api_factory(kms_backend="local", kms_local_key_file=key_file_path)
    return api


def kms_settings(peer: ServedTencentCloudPeer, key_id: str = TEST_KMS_KEY_ID) -> dict[str, Any]:
    return {
        "kms_backend": "tencent",
        "kms_key_id": key_id,
        "kms_region": TEST_REGION,
        "kms_endpoint": peer.host_port,
        "kms_scheme": "http",
        "tencent_secret_id": TEST_SECRET_ID,
        "tencent_secret_key": TEST_SECRET_KEY,
    }


@pytest.fixture
async def kms_api(api_factory: Any, tencent_peer: ServedTencentCloudPeer) -> Api:
    api: Api = await api_factory(**kms_settings(tencent_peer))
    return api
