"""Pytest fixtures for the local Alipay peer (loaded as a plugin by ``tests/conftest.py``).

The gateway starts once per session; every test gets a fresh ``AlipayPeer`` (trades, counters,
deliveries) swapped in behind it. The key pairs (the app's and "Alipay's") are generated once per
run and never written anywhere but a test's temporary directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.applications import Starlette

from tests.peers.alipay import GATEWAY_PATH, AlipayPeer, create_alipay_app, generate_key_pair
from tests.peers.server import PeerServer

NOTIFY_PATH = "/api/v1/payments/alipay/notify"


@dataclass(frozen=True)
class AlipayKeys:
    app_private: str  # ours: the app signs requests with it
    app_public: str  # what we uploaded to Alipay: the peer verifies requests with it
    alipay_private: str  # the peer signs answers and notifications with it
    alipay_public: str  # what Alipay hands out: we verify answers and notifications with it


class ServedAlipayPeer(AlipayPeer):
    """A peer state bound to the session's running server, knowing the app's private key too."""

    base_url: str
    gateway_url: str
    keys: AlipayKeys


@pytest.fixture(scope="session")
def alipay_keys() -> AlipayKeys:
    app_private, app_public = generate_key_pair()
    alipay_private, alipay_public = generate_key_pair()
    return AlipayKeys(app_private, app_public, alipay_private, alipay_public)


def _fresh(keys: AlipayKeys) -> ServedAlipayPeer:
    return ServedAlipayPeer(app_public_key=keys.app_public, alipay_key_pair=(keys.alipay_private, keys.alipay_public))


@pytest.fixture(scope="session")
def alipay_peer_server(alipay_keys: AlipayKeys) -> Iterator[PeerServer]:
    with PeerServer(create_alipay_app(_fresh(alipay_keys))) as server:
        yield server


@pytest.fixture
async def alipay_peer(alipay_peer_server: PeerServer, alipay_keys: AlipayKeys) -> AsyncIterator[ServedAlipayPeer]:
    """Fresh Alipay gateway state on the running server (scaled-down retry schedule). Deliveries
    still running at the end are cancelled."""
    peer = _fresh(alipay_keys)
    peer.base_url = alipay_peer_server.base_url
    peer.gateway_url = alipay_peer_server.base_url + GATEWAY_PATH
    peer.keys = alipay_keys
    app = alipay_peer_server.app
    assert isinstance(app, Starlette)
    app.state.peer = peer
    yield peer
    peer.aclose()


def alipay_settings(peer: ServedAlipayPeer, notify_base_url: str) -> dict[str, object]:
    """``make_settings`` overrides that point the app at the peer; notifications come back to
    ``notify_base_url`` (an app served with ``live()``)."""
    return {
        "alipay_app_id": peer.app_id,
        "alipay_private_key": peer.keys.app_private,
        "alipay_public_key": peer.keys.alipay_public,
        "alipay_seller_id": peer.seller_id,
        "alipay_gateway": peer.gateway_url,
        "payment_notify_base_url": notify_base_url,
    }


def alipay_env(peer: ServedAlipayPeer, notify_base_url: str, key_dir: Path) -> dict[str, str]:
    """The same settings for a ``wardrobe`` subprocess (``worker_env(**...)``), keys as files."""
    app_key, alipay_key = key_dir / "alipay-app-private.pem", key_dir / "alipay-public.pem"
    app_key.write_text(peer.keys.app_private)
    alipay_key.write_text(peer.keys.alipay_public)
    app_key.chmod(0o600)
    return {
        "alipay_app_id": peer.app_id,
        "alipay_private_key": str(app_key),
        "alipay_public_key": str(alipay_key),
        "alipay_seller_id": peer.seller_id,
        "alipay_gateway": peer.gateway_url,
        "payment_notify_base_url": notify_base_url,
    }
