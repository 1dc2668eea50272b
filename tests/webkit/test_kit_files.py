"""The kit's files as served and as written (src/wardrobe/webkit): served at /kit with the policy
and cache headers of every static site, its one vendored Socket.IO client immutable and matching
its manifest, every import of every module there, each module loaded by a site, nothing of either
site in it, no HTML built from strings, modules kept small. What the sites check alike is
tests/fixtures/static_sites.py."""

from __future__ import annotations

import re

from tests.conftest import Api
from tests.fixtures import static_sites as sites
from wardrobe.console import STATIC_DIR as CONSOLE_DIR
from wardrobe.webapp import STATIC_DIR as APP_DIR
from wardrobe.webkit import KIT_PATH, STATIC_DIR

JS_DIR = STATIC_DIR / "js"
VENDOR_DIR = STATIC_DIR / "vendor"
SOCKETIO = VENDOR_DIR / "socket.io-4.8.4.esm.min.js"


async def test_the_kit_is_served_with_a_strict_policy_and_cache_headers(api: Api) -> None:
    await sites.assert_module_revalidates(api.client, f"{KIT_PATH}/js/dom.js")
    vendored = await api.client.get(sites.KIT_SOCKETIO)
    sites.assert_static_headers(vendored, vendored=True)  # its name carries its version: cached for a year
    assert vendored.content == SOCKETIO.read_bytes()
    assert (await api.client.get(f"{KIT_PATH}/")).status_code == 404  # no page, no listing
    await sites.assert_nothing_else_served(api.client, KIT_PATH)


async def test_every_import_of_every_module_is_there(api: Api) -> None:
    """Each module of the kit, and all it imports, is there and served (the vendored file too)."""
    reached = sites.module_graph(sites.modules(STATIC_DIR))
    assert SOCKETIO in reached
    assert all(path.is_relative_to(STATIC_DIR) for path in reached), "the kit imports nothing of a site"
    await sites.assert_all_served(api.client, {sites.url_of(path) for path in reached})


def test_every_module_is_loaded_by_a_site() -> None:
    """No module of the kit lies unused (and so untested by the sites' browser tests)."""
    pages = {CONSOLE_DIR: ("index.html",), APP_DIR: ("index.html", "sandbox-checkout.html")}
    reached = sites.module_graph(path for site, names in pages.items() for path in sites.entry_modules(site, names))
    assert {*sites.modules(STATIC_DIR), SOCKETIO} <= reached


def test_the_vendored_socketio_client_is_the_one_the_manifest_records() -> None:
    sites.assert_vendor_matches_manifest(VENDOR_DIR)
    assert f'from "../vendor/{SOCKETIO.name}"' in (JS_DIR / "live.js").read_text(encoding="utf-8")
    for site in (CONSOLE_DIR, APP_DIR):
        assert not (site / "vendor").exists(), f"{site} keeps a copy of the kit's vendored files"


def test_the_kit_knows_nothing_of_either_site() -> None:
    """What differs between the sites (the words, where the tokens and the language are kept) is
    passed in: no key, path or storage of a site is written in the kit."""
    code = sites.text_of(sites.modules(STATIC_DIR))
    assert not re.search(r"wardrobe\.(console|app)\.", code)
    assert not re.search(r'"/(console|app)/', code)
    assert not re.search(r"\b(local|session)Storage\.", (JS_DIR / "api.js").read_text(encoding="utf-8"))
    assert "localStorage.setItem(storageKey" in (JS_DIR / "i18n.js").read_text(encoding="utf-8")  # the language


def test_no_module_builds_html_from_strings() -> None:
    sites.assert_no_html_from_strings(sites.modules(STATIC_DIR))


def test_modules_are_small() -> None:
    sites.assert_small(sites.modules(STATIC_DIR))
