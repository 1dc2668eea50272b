"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with every file
they load served by this process from ``static/``: FastAPI's defaults load them from a public CDN,
which is blocked or slow in mainland China, and a page that depends on a third party's host is
also a page that third party can change. The files are the npm packages' own dist files,
unchanged, recorded with their version and sha256 in ``static/manifest.json``.

The pages carry a Content-Security-Policy of their own: scripts, styles, images and connections from
this origin only. Swagger UI's page starts it with one inline script (FastAPI writes it), allowed by
its hash rather than by 'unsafe-inline'; ReDoc injects its styles at run time (styled-components),
compiles schema validators with ``new Function`` and searches in a worker it builds from a blob, so
its page allows inline styles, eval and blob workers, still from nothing but this origin. (ReDoc's
sidebar credit names Redocly's logo on their CDN: the policy refuses it, so the page loads nothing
from another host, and the credit shows its text without the image.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/docs-assets"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
IMMUTABLE = "public, max-age=31536000, immutable"


def _vendored(package: str, suffix: str) -> str:
    """The URL of the vendored file of ``package`` whose name ends with ``suffix`` (the manifest
    names the version, so an upgrade changes only the files and the manifest)."""
    manifest: dict[str, dict[str, Any]] = json.loads((STATIC_DIR / "manifest.json").read_text(encoding="utf-8"))
    [name] = [n for n, entry in manifest.items() if entry["package"] == package and n.endswith(suffix)]
    return f"{ASSETS_PATH}/{name}"


SWAGGER_JS = _vendored("swagger-ui-dist", ".js")
SWAGGER_CSS = _vendored("swagger-ui-dist", ".css")
FAVICON = _vendored("swagger-ui-dist", ".png")
REDOC_JS = _vendored("redoc", ".js")

# No validator badge: Swagger UI would otherwise send the document to validator.swagger.io.
_SWAGGER_PARAMETERS = {"validatorUrl": None}
_COMMON_POLICY = (
    "default-src 'none'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
)


def _policy(*parts: str) -> str:
    return "; ".join((*parts, *_COMMON_POLICY))


def _inline_script_hash(html: str) -> str:
    [script] = re.findall(r"<script>(.*?)</script>", html, re.S)
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def _page(html: str, policy: str) -> HTMLResponse:
    return HTMLResponse(
        html,
        headers={
            "content-security-policy": policy,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "cache-control": "no-cache",
        },
    )


class _ImmutableAssets:
    """The vendored files' names carry their version: cached for a year."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() != b"cache-control"),
                    (b"cache-control", IMMUTABLE.encode()),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await self.app(scope, receive, send_cached)


def install_api_docs(app: FastAPI, title: str) -> None:
    """``/docs`` and ``/redoc`` for ``app`` (created with ``docs_url=None, redoc_url=None``), and
    their files at ``/docs-assets``."""
    openapi_url = app.openapi_url or "/openapi.json"
    swagger = bytes(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS,
            swagger_favicon_url=FAVICON,
            swagger_ui_parameters=_SWAGGER_PARAMETERS,
        ).body
    ).decode()
    swagger_policy = _policy(f"script-src 'self' {_inline_script_hash(swagger)}", "style-src 'self' 'unsafe-inline'")
    redoc = bytes(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=REDOC_JS,
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        ).body
    ).decode()
    redoc_policy = _policy(
        "script-src 'self' 'unsafe-eval'", "style-src 'self' 'unsafe-inline'", "worker-src 'self' blob:"
    )

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _page(swagger, swagger_policy)

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return _page(redoc, redoc_policy)

    app.mount(ASSETS_PATH, _ImmutableAssets(StaticFiles(directory=STATIC_DIR)))
