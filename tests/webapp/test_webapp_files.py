"""The web app's files as served and as written: `/` leads to `/app/`, the security and cache
headers of /app, every module a page loads is there, the vendored Socket.IO client matching its
manifest, no HTML ever built from strings, every word in both languages, and modules kept small."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tests.conftest import Api
from wardrobe.webapp import APP_PATH, CONTENT_SECURITY_POLICY, STATIC_DIR

JS_DIR = STATIC_DIR / "js"
VENDOR_DIR = STATIC_DIR / "vendor"
PAGES = ("index.html", "sandbox-checkout.html")
IMPORT = re.compile(r'^import [^;]*? from "(\.{1,2}/[^"]+)";', re.M)
MAX_MODULE_LINES = 600  # the code base's size rule (devtools/sizes.py), for the app's own modules too
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(JS_DIR.rglob("*.js"))


def _own_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in _modules())


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
        page = await api.client.get(f"{APP_PATH}/{name}")
        assert page.status_code == 200, name
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-request-id"]  # through the edge middleware like any request
        assert page.headers["cache-control"] == "no-cache"
        assert "<script>" not in page.text  # nothing inline for the policy to refuse
        assert " style=" not in page.text
    assert (await api.client.get(f"{APP_PATH}/")).text == (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    policy = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["style-src"] == "'self'"
    assert policy["img-src"] == "'self' data: blob:"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"

    module = await api.client.get(f"{APP_PATH}/js/main.js")
    assert module.status_code == 200
    assert module.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert module.headers["cache-control"] == "no-cache"
    again = await api.client.get(f"{APP_PATH}/js/main.js", headers={"If-None-Match": module.headers["etag"]})
    assert again.status_code == 304  # revalidation is cheap

    vendored = await api.client.get(f"{APP_PATH}/vendor/socket.io-4.8.4.esm.min.js")
    assert vendored.status_code == 200
    assert vendored.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert vendored.headers["content-security-policy"] == CONTENT_SECURITY_POLICY

    missing = await api.client.get(f"{APP_PATH}/js/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"  # the API's envelope, never a page to render
    assert (await api.client.post(f"{APP_PATH}/", json={})).status_code == 405
    escape = await api.client.get(f"{APP_PATH}/../pyproject.toml")
    assert escape.status_code == 404 or "[project]" not in escape.text


async def test_every_file_the_pages_load_is_there(api: Api) -> None:
    """Each relative import of each module, and each file the pages name, exists and is served."""
    wanted: set[str] = set()
    for page in PAGES:
        named = re.findall(r'(?:src|href)="(/app/[^"]+)"', (STATIC_DIR / page).read_text(encoding="utf-8"))
        assert named, page
        wanted |= set(named)
    for path in _modules():
        for target in IMPORT.findall(path.read_text(encoding="utf-8")):
            resolved = (path.parent / target).resolve()
            assert resolved.is_file(), f"{path.name} imports {target}, which is not there"
            wanted.add(f"{APP_PATH}/{resolved.relative_to(STATIC_DIR).as_posix()}")
    assert f"{APP_PATH}/js/main.js" in wanted
    assert f"{APP_PATH}/js/sandbox_checkout.js" in wanted
    for url in sorted(wanted):
        assert (await api.client.get(url)).status_code == 200, url


def test_every_module_is_loaded_by_a_page() -> None:
    """No module lies unused (and so untested): each is reached from a page's entry module."""
    reached: set[Path] = set()
    todo = [JS_DIR / "main.js", JS_DIR / "sandbox_checkout.js"]
    while todo:
        path = todo.pop()
        if path in reached or path.suffix != ".js" or VENDOR_DIR in path.parents:
            continue
        reached.add(path)
        todo += [(path.parent / target).resolve() for target in IMPORT.findall(path.read_text(encoding="utf-8"))]
    assert set(_modules()) == reached


def test_the_vendored_socketio_client_is_the_one_the_manifest_records() -> None:
    manifest = json.loads((VENDOR_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest) == {p.name for p in VENDOR_DIR.glob("*.js")}
    for name, entry in manifest.items():
        assert hashlib.sha256((VENDOR_DIR / name).read_bytes()).hexdigest() == entry["sha256"], name
        assert entry["version"] in name
        assert (VENDOR_DIR / entry["license_file"]).read_text(encoding="utf-8").startswith("The MIT License")
    assert 'from "../vendor/socket.io-4.8.4.esm.min.js"' in (JS_DIR / "live.js").read_text(encoding="utf-8")


def test_no_module_builds_html_from_strings() -> None:
    """Data from users (and from the checkout's URL) only ever becomes text nodes or attributes."""
    for path in [*_modules(), *(STATIC_DIR / page for page in PAGES)]:
        text = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{path.name} uses {sink}"


def _strings(name: str) -> set[str]:
    text = (JS_DIR / name).read_text(encoding="utf-8")
    return set(re.findall(r'^  "([^"]+)": ', text, re.M))


def test_every_word_exists_in_both_languages() -> None:
    zh, en = _strings("strings_zh.js"), _strings("strings_en.js")
    assert len(zh) > 100
    assert zh == en
    code = _own_text()
    used = set(re.findall(r'\bt\("([a-z_][\w.]*)"', code))
    used |= {f"{kind}.{value}" for kind, value in re.findall(r'\blabel\("(\w+)", "(\w+)"\)', code)}
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

    zh = _strings("strings_zh.js")
    assert {f"ledger.{kind.value}" for kind in LedgerKind} <= zh
    assert {f"order_status.{status.value}" for status in OrderStatus} <= zh
    assert {f"channel.{channel.value}" for channel in PaymentChannel} <= zh


def test_tokens_are_kept_on_the_device_and_refreshed_under_a_lock() -> None:
    api_module = (JS_DIR / "api.js").read_text(encoding="utf-8")
    assert "localStorage" in api_module
    assert "sessionStorage" not in _own_text()
    assert "navigator.locks.request" in api_module  # one refresh across the app's tabs


def test_modules_are_small() -> None:
    """The size rule of src/ (devtools/sizes.py reads Python only): files and functions."""
    for path in [*_modules(), STATIC_DIR / "app.css"]:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) <= MAX_MODULE_LINES, f"{path.name}: {len(lines)} lines"
    for path in _modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        # A top-level function runs from its `function` line to the first line that closes it at
        # the left margin (the modules are formatted so).
        for start, line in enumerate(lines):
            if re.match(r"(export )?(async )?function ", line):
                end = next(i for i in range(start, len(lines)) if lines[i] == "}")
                assert end - start + 1 <= MAX_FUNCTION_LINES, f"{path.name}:{start + 1} {line}"
