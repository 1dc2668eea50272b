"""The end-user web app: static files (HTML, native ES modules, CSS) served at ``/app`` by the API
process itself, mobile first, acting only through the public API (``/api/v1``) and the Socket.IO
hub. No build step: what is in ``static/`` is what the browser runs. ``static/sandbox-checkout.html``
is the development payment sandbox's checkout page (``modules/payments/sandbox.py`` points orders of
the ``sandbox`` channel at it). Its headers (CSP, caching) are those of every static site here
(``core/static_site.py``): on the embedded default the presigned upload URLs are this origin's
``/api/v1/storage/objects/…``, which ``connect-src 'self'`` admits.
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp

from wardrobe.core.static_site import CONTENT_SECURITY_POLICY, static_site

__all__ = ["APP_PATH", "CONTENT_SECURITY_POLICY", "STATIC_DIR", "webapp_app"]

APP_PATH = "/app"
STATIC_DIR = Path(__file__).resolve().parent / "static"


def webapp_app() -> ASGIApp:
    """The app's files; ``/app`` redirects to ``/app/`` (index.html)."""
    return static_site(STATIC_DIR)
