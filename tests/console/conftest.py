"""The console under test: the app served by a real uvicorn on a loopback port, once per backend
(SQLite embedded, and MariaDB + Redis), in a thread of this process (a `wardrobe serve` process
would spend most of its start importing what this process has imported already), with the demo
data, its WeChat Pay pointed at the local peer, and tasks left queued (no worker consumes them, so a
task's page can be watched changing); one headless Chromium for the module, signed in once per
server."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import uvicorn
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import BACKENDS, Backend, _purge_redis, _truncate, make_settings
from tests.fixtures.auth import Session, data, new_phone, sms_login
from tests.fixtures.browser import Browser, start_chrome
from tests.fixtures.tasks import wait_until
from tests.modules.providers.images import encode, subject_on_background
from tests.peers.fixtures import PeerClock
from tests.peers.server import PeerServer
from tests.peers.wechatpay_fixtures import ServedWeChatPayPeer, settings_for
from wardrobe.app import create_app
from wardrobe.core.db import create_engine, unit_of_work
from wardrobe.models import User
from wardrobe.settings import Settings

STAFF_PASSWORD = "Wardrobe-console-7f3k!"
OPERATOR_PHONE = "13800000000"  # the demo operator `serve` seeds
OPERATOR_PASSWORD = "wardrobe-demo-1"


@dataclass
class Staff:
    phone: str
    password: str
    session: Session

    @property
    def headers(self) -> dict[str, str]:
        return self.session.headers


@dataclass
class ConsoleServer:
    """One running `wardrobe serve` and what a test needs to check what it did."""

    backend: str
    url: str
    client: httpx.AsyncClient  # the public API of the server, over HTTP
    engine: AsyncEngine  # the same database, for what no API shows (sessions ended)
    peer: ServedWeChatPayPeer
    admin: Staff
    operator: Staff
    home: Path
    signed_in: set[str] = field(default_factory=set)  # phones the browser was last signed in as

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return async_sessionmaker(self.engine, expire_on_commit=False)

    async def get(self, path: str, staff: Staff | Session, **params: Any) -> Any:
        return data(await self.client.get(path, params=params, headers=staff.headers))

    async def user(self) -> Session:
        return await sms_login(self.client)

    async def promote(self, user_id: int, role: str) -> None:
        async with unit_of_work(self.sessions) as db:
            await db.execute(update(User).where(User.id == user_id).values(role=role))

    async def staff(self, role: str, phone: str | None = None) -> Staff:
        """A new account of ``role`` with a password, made through the admin API by the admin."""
        phone = phone or new_phone()
        body = {"phone": phone, "password": STAFF_PASSWORD, "role": role}
        data(await self.client.post("/api/v1/admin/users", json=body, headers=self.admin.headers), 201)
        return Staff(phone, STAFF_PASSWORD, await self.password_login(phone, STAFF_PASSWORD))

    async def password_login(self, phone: str, password: str) -> Session:
        body = {"method": "password", "phone": phone, "password": password}
        answer = data(await self.client.post("/api/v1/auth/login", json=body))
        return Session(phone, answer["access_token"], answer["refresh_token"], answer["user"])

    async def upload(self, user: Session) -> str:
        photo, _ = subject_on_background(160, 120)
        body = encode(photo)
        grant = data(
            await self.client.post(
                "/api/v1/uploads",
                json={"filename": "in.png", "content_type": "image/png", "size": len(body)},
                headers=user.headers,
            )
        )
        upload = grant["upload"]
        put = await self.client.request(upload["method"], upload["url"], content=body, headers=upload["headers"])
        assert put.status_code == 201, put.text
        key: str = grant["object_key"]
        return key

    async def queued_task(self, user: Session, feature: str = "cutout") -> dict[str, Any]:
        """A task that stays queued: this server runs no worker."""
        body = {"feature": feature, "inputs": {"image": await self.upload(user)}}
        headers = {**user.headers, "Idempotency-Key": uuid.uuid4().hex}
        task: dict[str, Any] = data(await self.client.post("/api/v1/tasks", json=body, headers=headers), 202)
        assert task["status"] == "queued"
        return task


class ThreadedServer:
    """``create_app(settings)`` under uvicorn, with its lifespan, in a thread with its own event
    loop, on a socket bound before the app starts (its settings name its own address)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, settings: Settings) -> None:
        config = uvicorn.Config(
            create_app(settings), log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=3
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name=f"console-{self.port}", daemon=True
        )
        self.thread.start()

    def failed(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(30)
            if self.thread.is_alive():
                raise RuntimeError(f"the console's server on port {self.port} did not stop")
        self.socket.close()


def _settings(backend: Backend, home: Path, port: int, peer: ServedWeChatPayPeer) -> Settings:
    return make_settings(
        backend,
        redis_key_prefix=f"wc-{uuid.uuid4().hex[:12]}",
        seed_demo_data=True,  # plans, the demo features, the demo operator
        worker_in_process=False,
        var_dir=home / "var",
        storage_local_root=home / "objects",
        kms_local_key_file=home / "master-keys.json",
        login_limit_per_ip="100000/minute",
        **settings_for(peer, peer.base_url, port),
    )


async def _healthy(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health/ready")).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module", params=BACKENDS)
async def console_server(
    request: pytest.FixtureRequest,
    migrated_backends: dict[str, Backend],
    wechatpay_peer_server: PeerServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ConsoleServer]:
    backend = migrated_backends[request.param]
    home = tmp_path_factory.mktemp(f"console-{request.param}")
    peer = ServedWeChatPayPeer(clock=PeerClock())
    peer.base_url = wechatpay_peer_server.base_url
    wechatpay_peer_server.app.state.peer = peer  # type: ignore[attr-defined]
    served = ThreadedServer()
    settings = _settings(backend, home, served.port, peer)
    served.start(settings)
    url = served.url
    engine = create_engine(settings)
    client = httpx.AsyncClient(base_url=url, timeout=30)
    try:

        async def up() -> bool:
            if served.failed():
                raise AssertionError("the console's server did not start (see the log above)")
            return await _healthy(client)

        await wait_until(up, within=90, every=0.1)
        # The admin: a user promoted in the database (the only way to a first admin), who then
        # makes a password account for the browser through the admin API.
        first = await sms_login(client)
        async with unit_of_work(async_sessionmaker(engine, expire_on_commit=False)) as db:
            await db.execute(update(User).where(User.id == first.user["id"]).values(role="admin"))
        bootstrap = Staff(first.phone, "", first)
        server = ConsoleServer(request.param, url, client, engine, peer, bootstrap, bootstrap, home)
        admin = await server.staff("admin")
        operator_session = await server.password_login(OPERATOR_PHONE, OPERATOR_PASSWORD)
        server.admin = admin
        server.operator = Staff(OPERATOR_PHONE, OPERATOR_PASSWORD, operator_session)
        yield server
    finally:
        served.stop()
        await client.aclose()
        await peer.aclose()
        try:
            await _truncate(engine)
        finally:
            await engine.dispose()
        if backend.redis_url:
            await _purge_redis(settings.redis_key_prefix)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module's tests on both servers (each server is its own origin, so
    nothing a page keeps in the browser crosses from one to the other)."""
    driver = start_chrome()
    try:
        yield Browser(driver)
    finally:
        driver.quit()


def sign_in(browser: Browser, server: ConsoleServer, staff: Staff) -> None:
    """Sign the browser in as ``staff`` through the login page, unless it already is."""
    if server.signed_in == {staff.phone} and browser.base == server.url and not browser.absent("nav"):
        return
    browser.open(server.url)
    if browser.first_of("login-phone", "logout") == "logout":
        browser.click("logout")
    browser.fill("login-phone", staff.phone)
    browser.fill("login-password", staff.password)
    browser.click("login-submit")
    browser.find("nav")
    server.signed_in = {staff.phone}


@pytest.fixture
def as_admin(browser: Browser, console_server: ConsoleServer) -> Browser:
    sign_in(browser, console_server, console_server.admin)
    return browser


def totp_code(secret: str, at: float | None = None) -> str:
    """The code an authenticator app shows at ``at`` (now by default)."""
    return pyotp.TOTP(secret).at(time.time() if at is None else at)
