"""The static sites the API process serves itself (the operator console at ``/console``, the end
users' web app at ``/app``, and the kit of modules both import at ``/kit``): HTML, native ES modules
and CSS that act only through the public API and the Socket.IO hub on the same origin.

Every answer carries a strict Content-Security-Policy (scripts, styles and connections from this
origin only; images also ``data:`` and ``blob:``, a picture previewed before it is uploaded; no inline
script, no eval, no framing) and cache headers: pages and the sites' own modules are revalidated on
every load (``no-cache`` with an ETag, so a deploy is seen at once and an unchanged file costs a
304), while vendored files, whose names carry their version, are cached for a year.
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        # The API, the Socket.IO hub (polling, then its websocket), local presigned uploads.
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
VENDOR_PREFIX = "/vendor/"


def cache_control(path: str) -> str:
    """``path`` relative to the site's root, as requested."""
    return IMMUTABLE if path.startswith(VENDOR_PREFIX) else REVALIDATE


class StaticSiteHeaders:
    """Adds the security and cache headers to every answer of the wrapped app (files and
    redirects; a missing file is the API's 404 envelope, answered by its exception handler),
    replacing any the app set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        relative = scope["path"][len(scope.get("root_path", "")) :] or "/"
        added = {**SECURITY_HEADERS, "cache-control": cache_control(relative)}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.decode("latin-1").lower() not in added]
                message["headers"] = kept + [(k.encode(), v.encode()) for k, v in added.items()]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def static_site(directory: Path) -> ASGIApp:
    """The files of ``directory`` with those headers; ``/site`` redirects to ``/site/`` (index.html)."""
    return StaticSiteHeaders(StaticFiles(directory=directory, html=True))
