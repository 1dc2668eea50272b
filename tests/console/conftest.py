"""The console under test: the app served by a real uvicorn on a loopback port, once per backend
(SQLite embedded, and MariaDB + Redis), in a thread of this process (tests/fixtures/served.py), with
the demo data, its WeChat Pay pointed at the local peer, and tasks left queued (no worker consumes
them, so a task's page can be watched changing); one headless Chromium for the module, signed in
once per server."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import BACKENDS, Backend, _purge_redis, _truncate
from tests.fixtures.auth import Session, data, new_phone, sms_login
from tests.fixtures.browser import Browser, start_chrome
from tests.fixtures.served import ThreadedServer, served_settings, serving, wechatpay_peer
from tests.modules.providers.images import encode, subject_on_background
from tests.peers.server import PeerServer
from tests.peers.wechatpay_fixtures import ServedWeChatPayPeer
from wardrobe.core.db import create_engine, unit_of_work
from wardrobe.models import User

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


@pytest.fixture(scope="module", params=BACKENDS)
async def console_server(
    request: pytest.FixtureRequest,
    migrated_backends: dict[str, Backend],
    wechatpay_peer_server: PeerServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ConsoleServer]:
    backend = migrated_backends[request.param]
    home = tmp_path_factory.mktemp(f"console-{request.param}")
    peer = wechatpay_peer(wechatpay_peer_server)
    served = ThreadedServer()
    settings = served_settings(
        backend, home, served.port, peer, redis_key_prefix=f"wc-{uuid.uuid4().hex[:12]}", worker_in_process=False
    )
    engine = create_engine(settings)
    try:
        async with serving(served, settings, within=90) as client:
            # The admin: a user promoted in the database (the only way to a first admin), who then
            # makes a password account for the browser through the admin API.
            first = await sms_login(client)
            async with unit_of_work(async_sessionmaker(engine, expire_on_commit=False)) as db:
                await db.execute(update(User).where(User.id == first.user["id"]).values(role="admin"))
            bootstrap = Staff(first.phone, "", first)
            server = ConsoleServer(request.param, served.url, client, engine, peer, bootstrap, bootstrap, home)
            admin = await server.staff("admin")
            operator_session = await server.password_login(OPERATOR_PHONE, OPERATOR_PASSWORD)
            server.admin = admin
            server.operator = Staff(OPERATOR_PHONE, OPERATOR_PASSWORD, operator_session)
            yield server
    finally:
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
