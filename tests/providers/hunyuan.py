"""The Hunyuan provider wired to the Tencent Cloud peer, for worker processes and app instances
started by tests (``WARDROBE_EXTRA_PROVIDERS=["tests.providers.hunyuan:build"]``)."""

from __future__ import annotations

import os

from tests.peers.tencent_cloud import TEST_SECRET_ID, TEST_SECRET_KEY
from wardrobe.modules.providers.adapters.hunyuan import HunyuanProvider


def build() -> HunyuanProvider:
    """Provider "hunyuan" on the peer at ``WARDROBE_TEST_HUNYUAN_ENDPOINT`` (host:port), with the
    peer's obviously fake test credentials."""
    return HunyuanProvider(
        secret_id=TEST_SECRET_ID,
        secret_key=TEST_SECRET_KEY,
        endpoint=os.environ["WARDROBE_TEST_HUNYUAN_ENDPOINT"],
        scheme="http",
        timeout=5.0,
    )
