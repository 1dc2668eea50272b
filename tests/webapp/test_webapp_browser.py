"""The end users' web app in a real browser (headless Chromium at a phone's size), against the
embedded default served by a real uvicorn. Each flow is done as a user would do it, on the page,
and then checked where it counts: in what the API says afterwards."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.fixtures.auth import Session, new_phone
from tests.fixtures.browser import css
from tests.fixtures.tasks import OWN_PROCESSES
from tests.webapp.conftest import LANG_KEY, SESSION_KEY, TASK_SECONDS, AppBrowser, AppServer

# Chromium and a served app: kept on one xdist worker, one test at a time, with the other tests
# that run processes of their own (and the module's browser is started once).
pytestmark = OWN_PROCESSES

PACK_SKU = "pack-100"  # a demo quota pack (wardrobe.seed.DEMO_PLANS): ¥9.90 for 100
PACK_QUOTA = 100
NO_RELOAD = "window.__stillThisPage"


def _mark_page(browser: AppBrowser) -> None:
    """Mark the loaded document: the mark survives anything but a reload or another page."""
    browser.script(f"{NO_RELOAD} = true")


def _same_page(browser: AppBrowser) -> bool:
    return browser.script(f"return {NO_RELOAD} === true") is True


def _task_id(browser: AppBrowser) -> str:
    found = re.search(r"#/tasks/([0-9a-f]+)$", browser.driver.current_url)
    assert found, browser.driver.current_url
    return found.group(1)


def _run_and_watch(browser: AppBrowser) -> str:
    """Press run and follow the task on its page, without a reload, until it succeeded; its id."""
    _mark_page(browser)
    browser.click("run-submit")
    browser.wait_attribute("task-status", "data-status", "succeeded", timeout=TASK_SECONDS)
    assert _same_page(browser)  # the page followed the task live: no reload, no navigation
    # The last state came pushed over the socket (not from polling, which runs only without one).
    assert browser.attribute("task-view", "data-via") == "socket"
    assert browser.attribute("task-progress", "data-value") == "100"
    return _task_id(browser)


async def _image(server: AppServer, url: str) -> Image.Image:
    answer = await server.client.get(url)
    assert answer.status_code == 200
    image = Image.open(io.BytesIO(answer.content))
    image.load()
    return image


def _sign_in_by_sms(browser: AppBrowser, server: AppServer) -> str:
    browser.open_app(server.url)
    assert browser.text("login-submit") == "登录"  # Chinese unless asked otherwise
    phone = new_phone()
    browser.fill("login-phone", phone)
    browser.click("send-code")
    code = browser.wait(lambda _: re.fullmatch(r"\d{6}", browser.text("debug-code")) and browser.text("debug-code"))
    browser.fill("login-code", code)
    browser.click("login-submit")
    browser.card("feature-card", key="cutout")
    return phone


async def _buy_pack(browser: AppBrowser, server: AppServer, user: Session) -> str:
    """Buy the demo pack through the sandbox's checkout, on the pages; the order's number."""
    browser.click("nav-plans")
    browser.click(browser.card("plan-card", sku=PACK_SKU))
    channel = Select(browser.find("channel-select"))
    # What this server takes (WeChat Pay and the sandbox; no Alipay), in the API's order, but JSAPI:
    # that one pays inside WeChat only.
    assert [o.get_attribute("value") for o in channel.options] == ["wechat_native", "sandbox"]
    channel.select_by_value("sandbox")
    browser.click("buy-submit")
    browser.wait(lambda d: urlsplit(d.current_url).path == "/app/sandbox-checkout.html", message="no checkout")
    assert browser.text("checkout-amount") == "¥9.90"
    assert browser.text("checkout-name") == "100 次加油包"
    order_no = browser.text("checkout-order")
    pending = await server.get(f"/api/v1/billing/orders/{order_no}", user)
    assert pending["status"] == "pending"
    browser.click("sandbox-pay")
    browser.wait_attribute("checkout-outcome", "data-outcome", "fulfilled")
    browser.click("checkout-back")
    return order_no


async def test_a_newcomer_creates_chains_a_result_and_buys_quota(
    browser: AppBrowser, app_server: AppServer, photo: Path
) -> None:
    server = app_server
    browser.severe_logs()  # what earlier tests left
    phone = _sign_in_by_sms(browser, server)
    kept = browser.stored_session()
    user = Session(phone, kept["access"], kept["refresh"], kept["user"])
    me = await server.get("/api/v1/users/me", user)
    assert me["id"] == kept["user"]["id"]
    start = (await server.get("/api/v1/billing/quota", user))["balance"]

    # A cutout of an uploaded picture, followed live on its page.
    browser.click(browser.card("feature-card", key="cutout"))
    browser.choose_file(photo)
    browser.wait_attribute("upload-status", "data-state", "done")
    first = _run_and_watch(browser)
    assert browser.image_loaded("result-image") == 160
    task = await server.get(f"/api/v1/tasks/{first}", user)
    assert task["status"] == "succeeded"
    shown = browser.find("result-image").get_attribute("src") or ""
    assert urlsplit(shown).path == urlsplit(task["outputs"][0]["url"]).path
    assert browser.find("use-as-input").get_attribute("data-key") == task["outputs"][0]["key"]

    # Its result goes into the next feature as its picture: no upload, the form only needs margins.
    browser.click("use-as-input")
    browser.find("chooser-banner")
    browser.click(browser.card("feature-card", key="outpaint"))
    browser.wait_attribute("feature-form", "data-key", "outpaint")
    assert browser.attribute("upload-status", "data-state") == "done"
    assert browser.find("image-preview").get_attribute("src") == shown  # the result, shown as the picture
    browser.fill("field-right", "40")
    second = _run_and_watch(browser)
    outpainted = await server.get(f"/api/v1/tasks/{second}", user)
    extended = await _image(server, outpainted["outputs"][0]["url"])
    assert extended.size == (200, 120)  # the 160 × 120 cutout and 40 more on the right
    assert extended.mode == "RGBA"  # the cutout's transparency carried on: its input was the result

    # Both tasks are in the history, newest first; an item opens its task.
    browser.click("nav-history")
    browser.card("history-item", id=second)
    items = browser.find("history-list").find_elements(By.CSS_SELECTOR, css("history-item"))
    assert [item.get_attribute("data-id") for item in items] == [second, first]
    browser.click(items[1].find_element(By.TAG_NAME, "a"))
    browser.wait_attribute("task-view", "data-id", first)

    # The quota pack, bought through the sandbox, is credited exactly once.
    browser.click("nav-quota")
    spent = start - 1 - 2  # cutout and outpaint
    browser.wait_attribute("quota-balance", "data-value", str(spent))
    order_no = await _buy_pack(browser, server, user)
    browser.wait_attribute("quota-balance", "data-value", str(spent + PACK_QUOTA))
    order = await server.get(f"/api/v1/billing/orders/{order_no}", user)
    assert order["status"] == "fulfilled"
    assert (await server.get("/api/v1/billing/quota", user))["balance"] == spent + PACK_QUOTA
    ledger = (await server.get("/api/v1/billing/ledger", user, limit=100))["items"]
    credited = [row for row in ledger if row["ref"] == f"order:{order_no}"]
    assert [(row["kind"], row["amount"]) for row in credited] == [("purchase", PACK_QUOTA)]
    browser.card("ledger-item", ref=f"order:{order_no}")
    assert browser.severe_logs() == []


async def test_the_language_switch_changes_the_words_and_is_remembered(
    browser: AppBrowser, app_server: AppServer
) -> None:
    browser.severe_logs()
    browser.sign_in_as(app_server, await app_server.user())
    assert browser.text("nav-features") == "创作"
    assert browser.script("return document.documentElement.lang") == "zh-CN"
    browser.click("lang-switch")
    browser.wait(lambda _: browser.text("nav-features") == "Create")
    assert browser.text("nav-plans") == "Top up"
    assert browser.script("return document.documentElement.lang") == "en"
    assert browser.local_storage()[LANG_KEY] == "en"
    browser.driver.refresh()
    browser.wait(lambda _: browser.text("nav-features") == "Create")  # remembered
    # The operator's English name of a demo feature (wardrobe.seed), in place of the Chinese one.
    card = browser.card("feature-card", key="cutout")
    browser.wait(lambda _: "Cutout" in card.text, message="no English feature name")
    assert "智能抠图" not in card.text
    browser.click("nav-quota")
    browser.find("quota-balance")
    assert browser.find("page").find_element(By.TAG_NAME, "h1").text == "Quota"
    browser.click("lang-switch")
    browser.wait(lambda _: browser.text("nav-features") == "创作")
    assert browser.local_storage()[LANG_KEY] == "zh"
    assert browser.severe_logs() == []


# The app's own api.js and a second instance of it, as another tab holds one: its own module state
# (its own refresh in flight, or none), the same localStorage and Web Locks. Each makes three calls
# at once with the access token expired.
RACING_CALLS = """
const done = arguments[arguments.length - 1];
Promise.all([import("/app/js/api.js"), import("/app/js/api.js?another-tab")]).then(async (tabs) => {
  performance.clearResourceTimings();
  const calls = ["/api/v1/users/me", "/api/v1/billing/quota", "/api/v1/features"];
  await Promise.all(tabs.flatMap((api) => calls.map((path) => api.get(path))));
  const refresh = (entry) => new URL(entry.name).pathname === "/api/v1/auth/refresh";
  done(performance.getEntriesByType("resource").filter(refresh).length);
}).catch((error) => done(`${error.code}: ${error.message}`));
"""


async def test_an_expired_access_token_is_refreshed_once_across_racing_calls_and_tabs(
    browser: AppBrowser, app_server: AppServer
) -> None:
    """Six calls of two tabs find the access token expired at once: one refresh in all (a refresh
    token presented twice would end the whole session), and the session goes on."""
    browser.severe_logs()
    user = await app_server.user()
    browser.sign_in_as(app_server, user)
    browser.script(
        "const s = JSON.parse(localStorage.getItem(arguments[0])); s.accessExpiresAt = 0;"
        "localStorage.setItem(arguments[0], JSON.stringify(s));",
        SESSION_KEY,
    )
    assert browser.driver.execute_async_script(RACING_CALLS) == 1
    renewed = browser.stored_session()
    assert renewed["refresh"] != user.refresh
    assert renewed["accessExpiresAt"] > 0
    me = await app_server.get("/api/v1/users/me", Session(user.phone, renewed["access"], renewed["refresh"], user.user))
    assert me["id"] == user.user["id"]  # the session lives: no refresh token was used twice
    assert browser.severe_logs() == []


async def test_without_a_socket_the_task_page_polls_the_api(
    browser: AppBrowser, app_server: AppServer, photo: Path
) -> None:
    browser.severe_logs()
    browser.driver.execute_cdp_cmd("Network.enable", {})
    browser.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/socket.io/*"]})
    try:
        browser.sign_in_as(app_server, await app_server.user())
        browser.click(browser.card("feature-card", key="cutout"))
        browser.choose_file(photo)
        browser.wait_attribute("upload-status", "data-state", "done")
        _mark_page(browser)
        browser.click("run-submit")
        browser.wait_attribute("task-status", "data-status", "succeeded", timeout=TASK_SECONDS)
        assert _same_page(browser)
        assert browser.attribute("task-view", "data-via") == "poll"
        assert browser.image_loaded("result-image") == 160
    finally:
        browser.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    refused = [e for e in browser.severe_logs() if "/socket.io/" not in e["message"]]
    assert refused == []


async def test_the_apis_errors_are_shown_by_their_message(
    browser: AppBrowser, app_server: AppServer, photo: Path
) -> None:
    browser.severe_logs()
    user = await app_server.user()
    browser.sign_in_as(app_server, user)
    browser.click(browser.card("feature-card", key="outpaint"))
    browser.click("run-submit")  # no picture yet: said before anything is sent
    assert browser.find("error-image").text == "请先选择一张图片。"
    browser.choose_file(photo)
    browser.wait_attribute("upload-status", "data-state", "done")
    browser.fill("field-left", "5000")  # the schema's maximum is 2048
    browser.click("run-submit")
    message = browser.find("error-left").text
    assert message  # the API's own words for inputs.left, next to the field
    assert browser.absent("task-view")
    answer = await app_server.client.post(
        "/api/v1/tasks",
        json={
            "feature": "outpaint",
            "inputs": {"image": "uploads/x.png", "left": 5000, "top": 0, "right": 0, "bottom": 0},
        },
        headers={**user.headers, "Accept-Language": "zh-CN", "Idempotency-Key": "webapp-error-check"},
    )
    assert answer.status_code == 422
    assert message in {item["message"] for item in answer.json()["data"] if item["field"] == "inputs.left"}
    assert (await app_server.get("/api/v1/tasks", user))["items"] == []  # nothing was created
    refused = [e for e in browser.severe_logs() if not ("/api/v1/tasks" in e["message"] and "422" in e["message"])]
    assert refused == []


async def test_signing_out_ends_the_session(browser: AppBrowser, app_server: AppServer) -> None:
    browser.severe_logs()
    user = await app_server.user()
    browser.sign_in_as(app_server, user)
    browser.click("logout")
    browser.find("login-form")
    assert SESSION_KEY not in browser.local_storage()
    answer = await app_server.client.get("/api/v1/users/me", headers=user.headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == "AUTH_SESSION_REVOKED"
    assert browser.severe_logs() == []


async def test_a_wechat_pay_order_shows_its_code_and_turns_paid_live(
    browser: AppBrowser, app_server: AppServer
) -> None:
    """WeChat Pay's Native order: its code_url shown as it is (a QR code to make of it), then paid at
    the platform — the page hears of it (order.updated, quota.updated) without a reload."""
    browser.severe_logs()
    user = await app_server.user()
    start = (await app_server.get("/api/v1/billing/quota", user))["available"]
    browser.sign_in_as(app_server, user)
    browser.wait_attribute("header-quota", "data-value", str(start))
    browser.click("nav-plans")
    browser.click(browser.card("plan-card", sku=PACK_SKU))
    Select(browser.find("channel-select")).select_by_value("wechat_native")
    browser.click("buy-submit")
    order_no = browser.attribute("order-view", "data-no")
    order = await app_server.get(f"/api/v1/billing/orders/{order_no}", user)
    assert (order["channel"], order["status"]) == ("wechat_native", "pending")
    assert browser.text("pay-code") == order["pay_params"]["code_url"]
    assert browser.attribute("order-status", "data-status") == "pending"

    _mark_page(browser)
    await app_server.peer.pay(order_no).wait_delivered()
    browser.wait_attribute("order-status", "data-status", "fulfilled")
    browser.wait_attribute("header-quota", "data-value", str(start + PACK_QUOTA))
    assert _same_page(browser)
    assert browser.absent("pay-code")
    assert browser.severe_logs() == []


EVERY_KIND = {
    "type": "object",
    "required": ["photo", "style"],
    "properties": {
        "photo": {"type": "string", "format": "image-key", "title": "Photo"},
        "style": {"enum": ["soft", "vivid"], "default": "vivid", "title": "Style"},
        "strength": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "steps": {"type": "integer", "minimum": 1, "maximum": 50},
        "hd": {"type": "boolean", "default": True},
        "caption": {"type": "string", "maxLength": 40},
        "prompt": {"type": "string", "maxLength": 500, "description": "What to draw"},
    },
}
BUILD_FORM = """
const done = arguments[arguments.length - 1];
import("/app/js/schema_form.js").then((m) => {
  const form = m.schemaForm(arguments[0], { given: { photo: { key: "results/1/a.png", url: null } } });
  const box = document.createElement("form");
  box.dataset.testid = "generated";
  box.append(...form.fields);
  document.getElementById("page").replaceChildren(box);
  window.__generated = form;
  const control = (name) => box.querySelector(`[name="${name}"]`);
  done(Object.fromEntries(Object.keys(arguments[0].properties).map((name) => {
    const el = control(name);
    return [name, [el.tagName.toLowerCase(), el.type, el.min || null, el.max || null, el.step || null]];
  })));
}, (error) => done(String(error)));
"""


async def test_feature_forms_are_generated_from_any_form_schema(browser: AppBrowser, app_server: AppServer) -> None:
    """Every kind of property a feature's schema may hold, to a control and back to typed inputs."""
    browser.severe_logs()
    browser.sign_in_as(app_server, await app_server.user())
    controls = browser.driver.execute_async_script(BUILD_FORM, EVERY_KIND)
    assert controls == {
        "photo": ["input", "file", None, None, None],
        "style": ["select", "select-one", None, None, None],
        "strength": ["input", "number", "0", "1", "any"],
        "steps": ["input", "number", "1", "50", "1"],
        "hd": ["input", "checkbox", None, None, None],
        "caption": ["input", "text", None, None, None],
        "prompt": ["textarea", "textarea", None, None, None],
    }
    read = "return window.__generated.read()"
    # Defaults as the schema gives them; an image input given a key holds it; unset optional values left out.
    assert browser.script(read) == {"photo": "results/1/a.png", "style": "vivid", "strength": 0.5, "hd": True}
    assert not browser.absent("error-photo")  # each field has its slot for the API's word on it
    assert browser.attribute("upload-status", "data-state") == "done"  # the given key stands for an upload
    Select(browser.find("field-style")).select_by_visible_text("soft")
    browser.fill("field-steps", "12")
    browser.fill("field-caption", "hello")
    browser.click("field-hd")
    assert browser.script(read) == {
        "photo": "results/1/a.png",
        "style": "soft",
        "strength": 0.5,
        "steps": 12,
        "hd": False,
        "caption": "hello",
    }
    browser.fill("field-steps", "1.5")  # not an integer: sent as typed, for the API to refuse in words
    assert browser.script(read)["steps"] == "1.5"
    assert browser.severe_logs() == []
