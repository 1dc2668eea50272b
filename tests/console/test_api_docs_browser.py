"""/docs and /redoc in a real browser: they render the API from the files the API serves, within
their Content-Security-Policy (a refused script, style, worker or load is a SEVERE console entry)."""

from __future__ import annotations

from collections.abc import Callable

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.console.conftest import ConsoleServer
from tests.fixtures.browser import Browser
from tests.fixtures.tasks import OWN_PROCESSES

pytestmark = OWN_PROCESSES


def _shown(selector: str) -> Callable[[WebDriver], list[WebElement] | None]:
    def found(driver: WebDriver) -> list[WebElement] | None:
        return driver.find_elements(By.CSS_SELECTOR, selector) or None

    return found


def test_the_api_docs_pages_render_within_their_policy(browser: Browser, console_server: ConsoleServer) -> None:
    browser.severe_logs()  # what earlier tests left
    browser.driver.get(f"{console_server.url}/docs")
    operations = browser.wait(_shown(".swagger-ui .opblock"), message="Swagger UI shows the operations")
    assert len(operations) > 50
    assert browser.severe_logs() == []
    browser.driver.get(f"{console_server.url}/redoc")
    browser.wait(_shown("[data-section-id^='tag/']"), message="ReDoc shows the operations by tag")
    # ReDoc's sidebar credit loads Redocly's logo from its CDN: the policy refuses it (nothing is
    # fetched from another host), and that refusal is the only complaint allowed.
    refused = [e for e in browser.severe_logs() if "cdn.redoc.ly" not in e["message"]]
    assert refused == []
