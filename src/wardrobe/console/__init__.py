"""The operator console: static files (HTML, native ES modules, CSS) served at ``/console`` by the
API process itself, so staff need nothing but a browser and the console needs nothing but the
public admin API. No build step: what is in ``static/`` is what the browser runs. Its headers
(CSP, caching) are those of every static site here (``core/static_site.py``).
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp

from wardrobe.core.static_site import CONTENT_SECURITY_POLICY, static_site

__all__ = ["CONSOLE_PATH", "CONTENT_SECURITY_POLICY", "STATIC_DIR", "console_app"]

CONSOLE_PATH = "/console"
STATIC_DIR = Path(__file__).resolve().parent / "static"


def console_app() -> ASGIApp:
    """The console's files; ``/console`` redirects to ``/console/`` (index.html)."""
    return static_site(STATIC_DIR)
