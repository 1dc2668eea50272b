"""/docs and /redoc load nothing from another host: every file they name is served by the API from
the package, with the right type, and is the file the manifest records."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from tests.conftest import Api
from wardrobe.apidocs import ASSETS_PATH, STATIC_DIR

TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",), ".png": ("image/png",)}


def _manifest() -> dict[str, dict[str, str]]:
    manifest: dict[str, dict[str, str]] = json.loads((STATIC_DIR / "manifest.json").read_text(encoding="utf-8"))
    return manifest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_page_names_no_other_host_and_each_file_it_loads_is_ours(api: Api, page: str) -> None:
    resp = await api.client.get(page)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert "//" not in re.sub(r"<!--.*?-->", "", html, flags=re.S), "an absolute or protocol-relative URL"
    assert "googleapis" not in html
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls, html
    manifest = _manifest()
    for url in urls:
        assert url.startswith(f"{ASSETS_PATH}/"), url
        asset = await api.client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert asset.headers["content-type"].split(";")[0] in TYPES[suffix], url
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        name = url.removeprefix(f"{ASSETS_PATH}/")
        assert hashlib.sha256(asset.content).hexdigest() == manifest[name]["sha256"], url
    assert "openapi.json" in html
    assert (await api.client.get(f"{ASSETS_PATH}/nothing.js")).status_code == 404


async def test_the_pages_policy_allows_this_origin_only(api: Api) -> None:
    swagger = await api.client.get("/docs")
    policy = dict(part.split(" ", 1) for part in swagger.headers["content-security-policy"].split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    # The one inline script (Swagger UI's start) is allowed by its hash, not by 'unsafe-inline'.
    [inline] = re.findall(r"<script>(.*?)</script>", swagger.text, re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert "validatorUrl" in inline  # no badge fetched from validator.swagger.io
    redoc = await api.client.get("/redoc")
    redoc_policy = dict(part.split(" ", 1) for part in redoc.headers["content-security-policy"].split("; "))
    assert "<script>" not in redoc.text
    assert "http" not in redoc_policy["script-src"]
    assert redoc_policy["img-src"] == "'self' data:"


def test_the_vendored_files_are_the_ones_the_manifest_records() -> None:
    manifest = _manifest()
    assert set(manifest) == {p.name for p in STATIC_DIR.iterdir() if p.suffix in TYPES}
    for name, entry in manifest.items():
        assert hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest() == entry["sha256"], name
        assert entry["version"] in name
        assert (STATIC_DIR / entry["license_file"]).is_file()
