"""The kit the static sites share (the operator console at ``/console``, the end users' web app at
``/app``): native ES modules both import by absolute path (``/kit/js/dom.js``) and the one vendored
copy of the Socket.IO browser client (``/kit/vendor/…``), served at ``/kit`` by the API process
itself, so a fix to what the sites have in common lands once. No build step: what is in
``static/`` is what the browser runs. The modules know nothing of either site: what differs (the
words, where the tokens are kept, how an error looks) is passed in by the site. Its headers (CSP,
caching) are those of every static site here (``core/static_site.py``).
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp

from wardrobe.core.static_site import CONTENT_SECURITY_POLICY, static_site

__all__ = ["CONTENT_SECURITY_POLICY", "KIT_PATH", "STATIC_DIR", "kit_app"]

KIT_PATH = "/kit"
STATIC_DIR = Path(__file__).resolve().parent / "static"


def kit_app() -> ASGIApp:
    """The kit's files (no page of its own: ``/kit/`` is a 404)."""
    return static_site(STATIC_DIR)
