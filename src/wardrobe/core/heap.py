"""The collector and a long-running process's start-up objects.

A served process holds some 170,000 objects made at start-up (modules, the app, its settings and
schemas) that live until it exits. Python's full collection walks every one of them each time it
runs, about 100 ms on the 2-core machine of bench/README.md; in the API and in a worker that is an
event loop held still, and every push or request in flight waits it out. ``gc.freeze()`` (the
standard library's own answer to exactly this) moves them to a permanent generation that no
collection walks; they are still freed by reference counting, and only a reference cycle among
them would stay, which start-up objects do not form in any number that matters.

Only the ``wardrobe serve`` and ``wardrobe worker`` processes do it, after their start-up; an app
made by a test is left alone (the suite freezes once for itself, tests/conftest.py).
"""

from __future__ import annotations

import gc


def settle_after_startup() -> None:
    gc.collect()
    gc.freeze()
