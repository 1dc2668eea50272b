"""Pytest fixtures for the local vendor peers (loaded as a plugin by ``tests/conftest.py``).

Each peer's HTTP server starts once per session; every test gets fresh peer state by swapping the
state object behind the running app, so tests never see each other's codes, tokens or counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette

from tests.peers.server import PeerServer
from tests.peers.tencent_cloud import TencentCloudPeer, create_tencent_cloud_app
from tests.peers.wechat import WeChatPeer, create_wechat_app


class PeerClock:
    """A clock that stands still unless a test moves it, so TTLs and skew are deterministic.

    It starts at the wall clock because the Tencent Cloud SDK signs with ``time.time()`` and the
    peer rejects more than 300 s of skew.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ServedTencentCloudPeer(TencentCloudPeer):
    """A peer state bound to the session's running server."""

    base_url: str
    host_port: str


class ServedWeChatPeer(WeChatPeer):
    """A peer state bound to the session's running server."""

    base_url: str
    host_port: str


def _serving_app(server: PeerServer) -> Starlette:
    app = server.app
    if not isinstance(app, Starlette):
        raise TypeError("peer servers run Starlette apps")
    return app


@pytest.fixture
def peer_clock() -> PeerClock:
    """The movable clock shared by the peers of one test."""
    return PeerClock()


@pytest.fixture(scope="session")
def tencent_peer_server() -> Iterator[PeerServer]:
    with PeerServer(create_tencent_cloud_app(TencentCloudPeer())) as server:
        yield server


@pytest.fixture(scope="session")
def wechat_peer_server() -> Iterator[PeerServer]:
    with PeerServer(create_wechat_app(WeChatPeer())) as server:
        yield server


@pytest.fixture
def tencent_peer(tencent_peer_server: PeerServer, peer_clock: PeerClock) -> Iterator[ServedTencentCloudPeer]:
    """Fresh Tencent Cloud peer state (test credentials, SMS app and template, Hunyuan jobs) on
    ``peer_clock``, with ``base_url`` and ``host_port`` of the running server. Answers a test had
    the peer swallow are let go at the end, so no server thread stays blocked."""
    peer = ServedTencentCloudPeer(clock=peer_clock)
    peer.base_url = tencent_peer_server.base_url
    peer.host_port = tencent_peer_server.host_port
    _serving_app(tencent_peer_server).state.peer = peer
    yield peer
    peer.release_dropped_answers()


@pytest.fixture
def wechat_peer(wechat_peer_server: PeerServer, peer_clock: PeerClock) -> ServedWeChatPeer:
    """Fresh WeChat peer state (test appid/secret) on ``peer_clock``, with ``base_url`` and
    ``host_port`` of the running server."""
    peer = ServedWeChatPeer(clock=peer_clock)
    peer.base_url = wechat_peer_server.base_url
    peer.host_port = wechat_peer_server.host_port
    _serving_app(wechat_peer_server).state.peer = peer
    return peer


@pytest.fixture(scope="session")
def fault_vendor_server() -> Iterator[PeerServer]:
    from tests.peers.fault_vendor import FaultVendor, create_fault_vendor_app

    with PeerServer(create_fault_vendor_app(FaultVendor())) as server:
        yield server


@pytest.fixture
def fault_vendor(fault_vendor_server: PeerServer) -> Iterator[Any]:
    """Fresh fault-vendor state on the session's server; ``.base_url`` is set. Anything a test
    left held is released at the end, so no request stays blocked."""
    from tests.peers.fault_vendor import FaultVendor

    vendor = FaultVendor()
    vendor.base_url = fault_vendor_server.base_url  # type: ignore[attr-defined]
    _serving_app(fault_vendor_server).state.vendor = vendor
    yield vendor
    for key in list(vendor.scenarios):
        vendor.release(key)
