"""The console's files as served and as written: the security and cache headers of /console, every
module the page loads there (the kit's too) and none unused, no HTML ever built from strings, every
word in both languages, the role permissions the console hides buttons by equal to the server's,
and the tokens kept for the tab only. What the sites check alike is tests/fixtures/static_sites.py."""

from __future__ import annotations

import json
import re

from tests.conftest import Api
from tests.fixtures import static_sites as sites
from wardrobe.console import CONSOLE_PATH, STATIC_DIR
from wardrobe.core.permissions import ROLE_PERMISSIONS

JS_DIR = STATIC_DIR / "js"
PAGES = ("index.html",)


async def test_the_console_is_served_with_a_strict_policy_and_cache_headers(api: Api) -> None:
    redirect = await api.client.get(CONSOLE_PATH)
    assert redirect.status_code == 307
    assert redirect.headers["location"].endswith(f"{CONSOLE_PATH}/")
    sites.assert_page(await api.client.get(f"{CONSOLE_PATH}/"))
    await sites.assert_module_revalidates(api.client, f"{CONSOLE_PATH}/js/main.js")
    await sites.assert_nothing_else_served(api.client, CONSOLE_PATH)


async def test_every_file_the_page_loads_is_there(api: Api) -> None:
    """Each file index.html names, and each module main.js imports, here or in the kit, is served."""
    wanted = await sites.assert_site_served(api.client, STATIC_DIR, PAGES)
    assert {f"{CONSOLE_PATH}/js/main.js", f"{CONSOLE_PATH}/console.css", f"{CONSOLE_PATH}/icon.svg"} <= wanted


def test_every_module_is_loaded_by_the_page() -> None:
    sites.assert_every_module_loaded(STATIC_DIR, PAGES)


def test_no_module_builds_html_from_strings() -> None:
    sites.assert_no_html_from_strings([*sites.modules(STATIC_DIR), STATIC_DIR / "index.html"])


def test_every_word_exists_in_both_languages() -> None:
    """Every key the console's modules use, and the kit's modules it loads, in both languages."""
    zh, en = sites.string_keys(JS_DIR / "strings_zh.js"), sites.string_keys(JS_DIR / "strings_en.js")
    assert zh == en
    code = sites.loaded_code(STATIC_DIR, PAGES)
    used = sites.used_keys(code)
    assert {"common.loading", "common.more", "shell.not_found"} <= used  # the kit's, in the console's words
    used |= {f"nav.{key}" for key in re.findall(r'\{ key: "(\w+)", permission:', code)}
    used |= {f"task.{verb}{suffix}" for verb in ("cancel", "retry") for suffix in ("", "_hint", "_done")}
    assert used - zh == set()
    for kind, values in {
        "role": ROLE_PERMISSIONS,
        "task_status": ("queued", "running", "succeeded", "failed", "canceled"),
    }.items():
        assert {f"{kind}.{v}" for v in values} <= zh


def test_the_console_hides_buttons_by_the_servers_own_grants() -> None:
    text = (JS_DIR / "permissions.js").read_text(encoding="utf-8")
    literal = re.search(r"export const ROLE_PERMISSIONS = (\{.*?\n\});", text, re.S)
    assert literal is not None
    mirrored = json.loads(literal.group(1))
    assert mirrored == {role: sorted(p.value for p in ROLE_PERMISSIONS[role]) for role in ("operator", "admin")}


def test_tokens_are_kept_for_the_tab_only() -> None:
    """The kit's client keeps the tokens where the site says: the console says sessionStorage,
    with no lock across tabs (no other tab shares them); localStorage holds the language only."""
    api_module = (JS_DIR / "api.js").read_text(encoding="utf-8")
    assert re.search(r"\bstorage: sessionStorage\b", api_module)
    assert re.search(r"\block: null\b", api_module)
    assert "localStorage" not in sites.code_of(sites.modules(STATIC_DIR))
    assert 'storageKey: "wardrobe.console.lang"' in (JS_DIR / "i18n.js").read_text(encoding="utf-8")


def test_modules_are_small() -> None:
    sites.assert_small([*sites.modules(STATIC_DIR), STATIC_DIR / "console.css"])
