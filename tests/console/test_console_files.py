"""The console's files as served and as written: the security and cache headers of /console, the
vendored Socket.IO client matching its manifest, no HTML ever built from strings, every word in
both languages, and the role permissions the console hides buttons by equal to the server's."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tests.conftest import Api
from wardrobe.console import CONTENT_SECURITY_POLICY, STATIC_DIR
from wardrobe.core.permissions import ROLE_PERMISSIONS

JS_DIR = STATIC_DIR / "js"
VENDOR_DIR = STATIC_DIR / "vendor"


def _modules() -> list[Path]:
    return sorted(JS_DIR.rglob("*.js"))


def _own_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in _modules())


async def test_the_console_is_served_with_a_strict_policy_and_cache_headers(api: Api) -> None:
    redirect = await api.client.get("/console")
    assert redirect.status_code == 307
    assert redirect.headers["location"].endswith("/console/")

    page = await api.client.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    policy = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-request-id"]  # through the edge middleware like any request
    assert page.headers["cache-control"] == "no-cache"
    assert "<script>" not in page.text  # nothing inline for the CSP to refuse
    assert " style=" not in page.text

    module = await api.client.get("/console/js/main.js")
    assert module.status_code == 200
    assert module.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert module.headers["cache-control"] == "no-cache"
    again = await api.client.get("/console/js/main.js", headers={"If-None-Match": module.headers["etag"]})
    assert again.status_code == 304  # revalidation is cheap

    vendored = await api.client.get("/console/vendor/socket.io-4.8.4.esm.min.js")
    assert vendored.status_code == 200
    assert vendored.headers["cache-control"] == "public, max-age=31536000, immutable"

    missing = await api.client.get("/console/js/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"  # the API's envelope, never a page to render
    assert (await api.client.post("/console/", json={})).status_code == 405
    escape = await api.client.get("/console/../pyproject.toml")
    assert escape.status_code == 404 or "[project]" not in escape.text


async def test_every_file_the_page_loads_is_there(api: Api) -> None:
    """Each relative import of each module, and each file index.html names, is served."""
    wanted = {"/console/js/main.js", "/console/console.css", "/console/icon.svg"}
    for path in _modules():
        for target in re.findall(r'^import [^;]*? from "(\.{1,2}/[^"]+)";', path.read_text(encoding="utf-8"), re.M):
            resolved = (path.parent / target).resolve().relative_to(STATIC_DIR)
            wanted.add(f"/console/{resolved.as_posix()}")
    index = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert set(re.findall(r'(?:src|href)="(/console/[^"]+)"', index)) <= wanted
    for url in sorted(wanted):
        assert (await api.client.get(url)).status_code == 200, url


def test_the_vendored_socketio_client_is_the_one_the_manifest_records() -> None:
    manifest = json.loads((VENDOR_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest) == {p.name for p in VENDOR_DIR.glob("*.js")}
    for name, entry in manifest.items():
        assert hashlib.sha256((VENDOR_DIR / name).read_bytes()).hexdigest() == entry["sha256"], name
        assert entry["version"] in name
        assert (VENDOR_DIR / entry["license_file"]).read_text(encoding="utf-8").startswith("The MIT License")
    assert 'from "../vendor/socket.io-4.8.4.esm.min.js"' in (JS_DIR / "live.js").read_text(encoding="utf-8")


def test_no_module_builds_html_from_strings() -> None:
    """Data from users only ever becomes text nodes or attribute values."""
    for path in [*_modules(), STATIC_DIR / "index.html"]:
        text = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{path.name} uses {sink}"


def _strings(name: str) -> set[str]:
    text = (JS_DIR / name).read_text(encoding="utf-8")
    return set(re.findall(r'^  "([^"]+)": ', text, re.M))


def test_every_word_exists_in_both_languages() -> None:
    zh, en = _strings("strings_zh.js"), _strings("strings_en.js")
    assert zh == en
    code = _own_text()
    used = set(re.findall(r'\bt\("([a-z_][\w.]*)"', code))
    used |= {f"{kind}.{value}" for kind, value in re.findall(r'\blabel\("(\w+)", "(\w+)"\)', code)}
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
    api_module = (JS_DIR / "api.js").read_text(encoding="utf-8")
    assert "sessionStorage" in api_module
    assert "localStorage" not in api_module
    assert "localStorage" in (JS_DIR / "i18n.js").read_text(encoding="utf-8")  # the language only
