"""The web app's files as served and as written: `/` leads to `/app/`, the security and cache
headers of /app, every module a page loads there (the kit's too) and none unused, no HTML ever
built from strings, every word in both languages, tokens kept on the device, and modules kept
small. What the sites check alike is tests/fixtures/static_sites.py."""

from __future__ import annotations

import re

from tests.conftest import Api
from tests.fixtures import static_sites as sites
from wardrobe.webapp import APP_PATH, STATIC_DIR

JS_DIR = STATIC_DIR / "js"
PAGES = ("index.html", "sandbox-checkout.html")


async def test_the_root_leads_to_the_app(api: Api) -> None:
    root = await api.client.get("/")
    assert root.status_code == 307
    assert root.headers["location"] == f"{APP_PATH}/"
    bare = await api.client.get(APP_PATH)
    assert bare.status_code == 307
    assert bare.headers["location"].endswith(f"{APP_PATH}/")
    assert "/" not in api.app.openapi()["paths"]  # not an operation of the API


async def test_the_app_is_served_with_a_strict_policy_and_cache_headers(api: Api) -> None:
    for name in ("", *PAGES):
        sites.assert_page(await api.client.get(f"{APP_PATH}/{name}"))
    assert (await api.client.get(f"{APP_PATH}/")).text == (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    await sites.assert_module_revalidates(api.client, f"{APP_PATH}/js/main.js")
    await sites.assert_nothing_else_served(api.client, APP_PATH)


async def test_every_file_the_pages_load_is_there(api: Api) -> None:
    """Each file the pages name, and each module their entries import, here or in the kit, is served."""
    wanted = await sites.assert_site_served(api.client, STATIC_DIR, PAGES)
    assert {f"{APP_PATH}/js/main.js", f"{APP_PATH}/js/sandbox_checkout.js", f"{APP_PATH}/app.css"} <= wanted


def test_every_module_is_loaded_by_a_page() -> None:
    sites.assert_every_module_loaded(STATIC_DIR, PAGES)


def test_no_module_builds_html_from_strings() -> None:
    """Data from users (and from the checkout's URL) only ever becomes text nodes or attributes."""
    sites.assert_no_html_from_strings([*sites.modules(STATIC_DIR), *(STATIC_DIR / page for page in PAGES)])


def test_every_word_exists_in_both_languages() -> None:
    """Every key the app's modules use, and the kit's modules it loads, in both languages."""
    zh, en = sites.string_keys(JS_DIR / "strings_zh.js"), sites.string_keys(JS_DIR / "strings_en.js")
    assert len(zh) > 100
    assert zh == en
    code = sites.loaded_code(STATIC_DIR, PAGES)
    used = sites.used_keys(code)
    assert {"common.loading", "common.more", "shell.not_found"} <= used  # the kit's, in the app's words
    nav = re.search(r"const NAV = \[(.*?)\];", code, re.S)
    assert nav is not None
    used |= {f"nav.{key}" for key in re.findall(r'"(\w+)"', nav.group(1))}
    assert len(used) > 60
    assert used - zh == set()
    for kind, values in {
        "task_status": ("queued", "running", "succeeded", "failed", "canceled"),
        "order_status": ("pending", "paid", "fulfilled", "closed", "refunding", "partially_refunded", "refunded"),
        "channel": ("wechat_jsapi", "wechat_native", "alipay_page", "alipay_wap", "alipay_qr", "sandbox"),
        "plan_kind": ("membership", "quota_pack"),
    }.items():
        assert {f"{kind}.{v}" for v in values} <= zh


def test_the_ledger_and_channel_words_cover_the_servers_values() -> None:
    from wardrobe.models import LedgerKind, OrderStatus, PaymentChannel

    zh = sites.string_keys(JS_DIR / "strings_zh.js")
    assert {f"ledger.{kind.value}" for kind in LedgerKind} <= zh
    assert {f"order_status.{status.value}" for status in OrderStatus} <= zh
    assert {f"channel.{channel.value}" for channel in PaymentChannel} <= zh


def test_tokens_are_kept_on_the_device_and_refreshed_under_a_lock() -> None:
    """The kit's client keeps the tokens where the site says: the app says localStorage, shared
    by its tabs, so one refresh at a time across them under a Web Lock."""
    api_module = (JS_DIR / "api.js").read_text(encoding="utf-8")
    assert re.search(r"\bstorage: localStorage\b", api_module)
    assert re.search(r'\block: "wardrobe\.app\.[\w.]+"', api_module)
    assert "sessionStorage" not in sites.code_of(sites.modules(STATIC_DIR))


def test_modules_are_small() -> None:
    sites.assert_small([*sites.modules(STATIC_DIR), STATIC_DIR / "app.css"])
