"""OpenAPI helpers: the error answers a route documents, and readable operation ids.

A route lists the codes of its own rules with ``responses=errors(...)``. What every route may
answer because of the edge (a malformed or oversized body, a full rate window, a dependency that
is down, an expired token, a missing permission) is added to every operation it applies to by
``core/contract.py``, from the same facts the edge acts on, so no route can forget one.
"""

from __future__ import annotations

import re
from typing import Any

from wardrobe.core.errors import ErrorCode

AUTH_ERRORS = (
    ErrorCode.AUTH_REQUIRED,
    ErrorCode.AUTH_TOKEN_INVALID,
    ErrorCode.AUTH_TOKEN_EXPIRED,
    ErrorCode.AUTH_SESSION_REVOKED,
    ErrorCode.ACCOUNT_DISABLED,
)

# The key under which a documented response lists the ErrorCodes it may carry; core/contract.py
# turns it into the response's schema (its `code` limited to exactly these) and examples.
ERROR_CODES_KEY = "x-error-codes"


def errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: one entry per status, listing every code it may carry."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in (*codes, ErrorCode.VALIDATION_FAILED, ErrorCode.INTERNAL_ERROR):
        by_status.setdefault(code.status, []).append(code)
    return {
        status: {
            "description": " / ".join(c.name for c in dict.fromkeys(group)),
            ERROR_CODES_KEY: [c.name for c in dict.fromkeys(group)],
        }
        for status, group in sorted(by_status.items())
    }


# -- Operation ids ------------------------------------------------------------------------------

# Last path segments that name what a POST does rather than a resource it adds to. A new action
# route adds its verb here, or it is read as a collection (`…_create`).
ACTIONS = frozenset(
    {
        "approve",
        "cancel",
        "complete",
        "disable",
        "enable",
        "login",
        "logout",
        "logout-all",
        "notify",
        "refresh",
        "refund",
        "refund-notify",
        "reject",
        "reset",
        "reveal-id",
        "retry",
        "revoke-sessions",
        "setup",
        "switch",
    }
)
_METHOD_VERBS = {"GET": "get", "POST": "create", "PUT": "replace", "PATCH": "update", "DELETE": "delete"}
OPERATION_ID = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")


def operation_id(route: Any) -> str:
    """``{module}_{noun…}_{verb}`` from the path and method, e.g. ``tasks_create`` (POST
    /api/v1/tasks), ``tasks_get`` (GET …/{task_id}), ``admin_orders_refund``, ``auth_sessions_list``.

    Generated clients name their methods after these, so they depend only on what a client
    already depends on (the method and the path) and stay stable across refactors. The noun is
    the path's fixed segments after ``/api/v1`` (``ops`` for probes and metrics); the verb is the
    last segment when it is an action, else the method's: GET is ``list`` on a collection (the
    path ends in a plural noun) and ``get`` otherwise, POST ``create``, PUT ``replace``, PATCH
    ``update``, DELETE ``delete``. FastAPI's ``generate_unique_id_function`` (called before the
    route knows its response model, hence the plural rule); a test holds every id to this form
    and checks that none collide.
    """
    path: str = route.path
    [method] = sorted(route.methods)
    segments = (
        path.removeprefix("/api/v1/").split("/") if path.startswith("/api/v1/") else ["ops", *path[1:].split("/")]
    )
    nouns = [s for s in segments if not s.startswith("{")]
    if nouns[-1] in ACTIONS and not segments[-1].startswith("{"):
        verb = nouns.pop()
    elif method == "GET" and segments[0] != "ops" and segments[-1].endswith("s"):
        verb = "list"
    else:
        verb = _METHOD_VERBS[method]
    # A file name in a path (exports/orders.csv) gives its extension as a word: orders_csv.
    return "_".join([*nouns, verb]).replace("-", "_").replace(".", "_")


# -- Rules beyond JSON Schema -------------------------------------------------------------------

SERVER_CHECK_KEY = "x-server-check"


def server_check(rule: str) -> dict[str, Any]:
    """``json_schema_extra`` of a field the server checks beyond what its JSON Schema can say: a
    feature's own input form, whose upload an object key is, a password's strength. The rule is
    documented for clients under ``x-server-check``; input the schema allows may still be refused
    on that field (``422 VALIDATION_FAILED`` naming it), and on no other."""
    return {SERVER_CHECK_KEY: rule}
