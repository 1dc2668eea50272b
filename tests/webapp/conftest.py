"""The web app under test: the embedded default as `wardrobe serve` runs it on a fresh machine — a
new SQLite file migrated and seeded with the demo data on first start, local storage, the worker
in the API process (the demo features run on the local CPU provider), the payment sandbox on, and
WeChat Pay and WeChat's QR and app login pointed at the local peers (tests/peers) — served by a
real uvicorn on a loopback port in a thread of this process (tests/fixtures/served.py); one headless
Chromium for the module, at a phone's size."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.conftest import Backend
from tests.fixtures.auth import Session, data, sms_login
from tests.fixtures.browser import Browser, css, start_chrome
from tests.fixtures.served import ThreadedServer, served_settings, serving, wechatpay_peer
from tests.modules.providers.images import encode, subject_on_background
from tests.peers.server import PeerServer
from tests.peers.wechat import TEST_MOBILE_APPID, TEST_MOBILE_SECRET, TEST_WEB_APPID, TEST_WEB_SECRET
from tests.peers.wechatpay_fixtures import ServedWeChatPayPeer
from wardrobe.settings import Settings

SESSION_KEY = "wardrobe.app.session"
LANG_KEY = "wardrobe.app.lang"
PHONE = (390, 844)  # the page of a common phone, in CSS pixels
TASK_SECONDS = 90.0  # a demo feature on the local CPU provider, with room for a loaded CI machine


@dataclass
class AppServer:
    url: str
    client: httpx.AsyncClient  # the public API of the server, over HTTP
    settings: Settings
    peer: ServedWeChatPayPeer  # WeChat Pay, as the server sees it

    async def get(self, path: str, user: Session, **params: Any) -> Any:
        return data(await self.client.get(path, params=params, headers=user.headers))

    async def user(self) -> Session:
        return await sms_login(self.client)


class AppBrowser(Browser):
    """The console tests' driver, at the app's address and with what its flows need."""

    def open_app(self, base: str, route: str = "") -> None:
        self.base = base
        self.driver.get(f"{base}/app/{f'#/{route}' if route else ''}")

    def attribute(self, testid: str, name: str) -> str:
        return self.find(testid).get_attribute(name) or ""

    def wait_attribute(self, testid: str, name: str, wanted: str, timeout: float = 20.0) -> WebElement:
        """The element ``testid`` once its attribute ``name`` is ``wanted`` (it may be re-rendered)."""

        def reached(driver: WebDriver) -> WebElement | None:
            for element in driver.find_elements(By.CSS_SELECTOR, css(testid)):
                if element.get_attribute(name) == wanted:
                    return element
            return None

        return self.wait(reached, timeout, message=f"{testid} never had {name}={wanted!r}")

    def card(self, testid: str, **data_attributes: str) -> WebElement:
        """The element ``testid`` with these data attributes (``key="cutout"``: ``data-key``)."""
        selector = css(testid) + "".join(f'[data-{k}="{v}"]' for k, v in data_attributes.items())

        def present(driver: WebDriver) -> WebElement | None:
            found = driver.find_elements(By.CSS_SELECTOR, selector)
            return found[0] if found else None

        return self.wait(present, message=f"no {selector}")

    def image_loaded(self, testid: str) -> int:
        """The natural width of the first image ``testid`` once it has loaded."""
        script = (
            "const i = document.querySelector(arguments[0]);"
            "return i && i.complete && i.naturalWidth > 0 ? i.naturalWidth : null;"
        )
        width: int = self.wait(lambda _: self.script(script, css(testid)), message=f"{testid} never loaded")
        return width

    def choose_file(self, path: Path) -> None:
        self.find("file-input").send_keys(str(path))

    def stored_session(self) -> dict[str, Any]:
        kept: dict[str, Any] = json.loads(self.local_storage()[SESSION_KEY])
        return kept

    def sign_in_as(self, server: AppServer, user: Session) -> None:
        """Start signed in as ``user`` (tokens of an API login, kept where the app keeps them)."""
        self.open_app(server.url)
        kept = {"access": user.access, "refresh": user.refresh, "accessExpiresAt": 4102444800000, "user": user.user}
        self.script("localStorage.setItem(arguments[0], arguments[1])", SESSION_KEY, json.dumps(kept))
        self.driver.refresh()
        self.find("nav")


def _settings(home: Path, port: int, peer: ServedWeChatPayPeer, wechat_base: str) -> Settings:
    database = f"sqlite+aiosqlite:///{home / 'wardrobe.db'}"
    return served_settings(
        Backend("sqlite", database, ""),
        home,
        port,
        peer,
        auto_migrate=True,  # a fresh file, as on a first `serve`
        worker_in_process=True,  # tasks run, as embedded
        payment_sandbox=True,  # on by default only in development; the tests run as "test"
        wechat_api_base=wechat_base,
        wechat_open_base=wechat_base,
        wechat_web_appid=TEST_WEB_APPID,
        wechat_web_secret=TEST_WEB_SECRET,
        wechat_web_redirect_uri=f"http://127.0.0.1:{port}/app/",
        wechat_mobile_appid=TEST_MOBILE_APPID,
        wechat_mobile_secret=TEST_MOBILE_SECRET,
    )


@pytest.fixture(scope="module")
async def app_server(
    tmp_path_factory: pytest.TempPathFactory, wechatpay_peer_server: PeerServer, wechat_peer_server: PeerServer
) -> AsyncIterator[AppServer]:
    home = tmp_path_factory.mktemp("webapp")
    peer = wechatpay_peer(wechatpay_peer_server)
    served = ThreadedServer()
    settings = _settings(home, served.port, peer, wechat_peer_server.base_url)
    try:
        async with serving(served, settings, within=120) as client:
            yield AppServer(served.url, client, settings, peer)
    finally:
        await peer.aclose()


@pytest.fixture(scope="module")
def browser() -> Iterator[AppBrowser]:
    driver = start_chrome()
    try:
        app = AppBrowser(driver)
        app.viewport(*PHONE)
        yield app
    finally:
        driver.quit()


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A picture to upload: a subject on a plain background, 160 × 120."""
    picture, _ = subject_on_background(160, 120)
    path = tmp_path / "photo.png"
    path.write_bytes(encode(picture))
    return path
