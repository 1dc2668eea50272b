"""Every route is reached by its own path, whatever the order of the routers.

The routers are ordered by how often clients call them (src/wardrobe/app.py), because FastAPI
tries the routes one by one. That is safe only while no route placed earlier also matches a path
meant for a later one (a ``/tasks/{task_id}`` before a ``/tasks/export`` would swallow it). This
checks every route of the app against every route before it.
"""

from __future__ import annotations

import re

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount, Route

from wardrobe.app import ROUTERS, create_app
from wardrobe.settings import Settings

_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _sample(path: str) -> str:
    # A value every convertor here accepts (str, path and int parameters).
    return _PARAM.sub("7", path)


def _in_order() -> list[BaseRoute]:
    """The routes in the order the app tries them: its own routes in place, routers expanded."""
    app = create_app(Settings(_env_file=None))
    flattened: list[BaseRoute] = []
    included = iter(ROUTERS)
    for route in app.router.routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            assert inner is next(included), "the app includes the routers in ROUTERS' order"
            flattened.extend(inner.routes)
        else:
            flattened.append(route)
    assert next(included, None) is None, "every router of ROUTERS is included"
    return flattened


def _takes(earlier: BaseRoute, method: str, path: str) -> bool:
    if isinstance(earlier, Mount):
        return path.startswith(earlier.path.rstrip("/") + "/")
    if isinstance(earlier, (APIRoute, Route)):
        methods = earlier.methods or set()
        return bool(earlier.path_regex.fullmatch(path)) and (not methods or method in methods)
    return False


def test_no_route_is_shadowed_by_one_before_it() -> None:
    routes = _in_order()
    api_routes = [r for r in routes if isinstance(r, APIRoute)]
    assert len(api_routes) > 80  # the whole API, not a stub app
    shadowed = []
    for index, route in enumerate(routes):
        if not isinstance(route, APIRoute):
            continue
        path = _sample(route.path)
        for method in sorted(route.methods or ()):
            first = next(r for r in routes[: index + 1] if r is route or _takes(r, method, path))
            if first is not route:
                shadowed.append(f"{method} {route.path} is taken by {getattr(first, 'path', first)}")
    assert shadowed == []


def test_the_hot_routes_come_first() -> None:
    routes = _in_order()
    position = {(m, r.path): i for i, r in enumerate(routes) if isinstance(r, APIRoute) for m in r.methods or ()}
    # What a client screen calls over and over sits within the first few routes tried.
    for hot in [("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks"), ("GET", "/api/v1/tasks/{task_id}")]:
        assert position[hot] < 10, hot
    assert position[("GET", "/api/v1/tasks")] < position[("GET", "/api/v1/admin/tasks")]
