"""Pytest fixtures for the local WeChat Pay peer (loaded as a plugin by ``tests/conftest.py``).

The server starts once per session; every test gets a fresh ``WeChatPayPeer`` swapped in behind
it. ``wechatpay_settings(port)`` gives the settings that point Wardrobe at the peer, with its
notifications sent to an app served on ``port`` (``tests.fixtures.realtime.live``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from starlette.applications import Starlette

from tests.peers.fixtures import PeerClock
from tests.peers.server import PeerServer
from tests.peers.wechatpay import WeChatPayPeer, create_wechatpay_app

WeChatPaySettings = Callable[[int], dict[str, str]]


class ServedWeChatPayPeer(WeChatPayPeer):
    """A peer state bound to the session's running server."""

    base_url: str


@pytest.fixture(scope="session")
def wechatpay_peer_server() -> Iterator[PeerServer]:
    with PeerServer(create_wechatpay_app(WeChatPayPeer())) as server:
        yield server


@pytest.fixture
async def wechatpay_peer(
    wechatpay_peer_server: PeerServer, peer_clock: PeerClock
) -> AsyncIterator[ServedWeChatPayPeer]:
    """Fresh WeChat Pay peer state (test merchant, run-time keys) on ``peer_clock``, with the
    ``base_url`` of the running server. Deliveries still retrying at the end are stopped."""
    peer = ServedWeChatPayPeer(clock=peer_clock)
    peer.base_url = wechatpay_peer_server.base_url
    app = wechatpay_peer_server.app
    if not isinstance(app, Starlette):
        raise TypeError("peer servers run Starlette apps")
    app.state.peer = peer
    yield peer
    await peer.aclose()


def settings_for(peer: WeChatPayPeer, base_url: str, notify_port: int) -> dict[str, str]:
    keys = peer.keys
    return {
        "wechatpay_mchid": peer.mchid,
        "wechatpay_appid": peer.appid,
        "wechatpay_cert_serial": peer.merchant_serial,
        "wechatpay_private_key": keys.merchant.private_pem,
        "wechatpay_apiv3_key": keys.apiv3_key,
        "wechatpay_public_key": keys.platform.public_pem,
        "wechatpay_public_key_id": peer.public_key_id,
        "wechatpay_api_base": base_url,
        "payment_notify_base_url": f"http://127.0.0.1:{notify_port}",
    }


@pytest.fixture
def wechatpay_settings(wechatpay_peer: ServedWeChatPayPeer) -> WeChatPaySettings:
    """``make_settings`` overrides (also usable as ``worker_env`` settings: all strings) that point
    the app at the peer, with notifications to ``http://127.0.0.1:{port}``."""

    def overrides(notify_port: int) -> dict[str, str]:
        return settings_for(wechatpay_peer, wechatpay_peer.base_url, notify_port)

    return overrides
