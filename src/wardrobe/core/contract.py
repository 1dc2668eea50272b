"""The OpenAPI document tells every answer an operation can give.

Routes document the codes of their own rules (``responses=errors(...)``). The answers that come
from layers every request crosses are added here, to every operation they apply to, from the
same facts those layers act on, so that a route cannot forget one and a new route gets them too:

- the JSON guard and the exception handlers: ``422 VALIDATION_FAILED`` and ``500`` anywhere,
  ``400 MALFORMED_REQUEST`` where the body is JSON;
- the body cap (``EdgeMiddleware``): ``413 PAYLOAD_TOO_LARGE`` where there is a body;
- the rate limits (``core/edge_limits.py``): ``429 RATE_LIMITED`` (with ``Retry-After``) where
  ``classify`` limits the request, and ``503`` where its class fails closed;
- the database and Redis: ``503 DEPENDENCY_UNAVAILABLE`` where the route reaches them;
- authentication: the ``401`` codes and ``403 ACCOUNT_DISABLED`` where a bearer token is
  required, and ``403 PERMISSION_DENIED`` plus ``x-permission`` (the permission, and the roles
  that hold it) where a route asks for a permission; ``403 TOTP_ENROLMENT_REQUIRED`` where that
  permission is staff's (``core/principal.py`` ``check_second_factor``); ``403 PERMISSION_DENIED``
  also wherever a bearer token is taken, since an API key is refused outside the routes and scopes
  it holds, and ``x-api-key-scope`` plus ``429`` (the key's own limit) where an API key may call.

Every error answer's schema is the envelope with its ``code`` limited to the codes listed for
that status, so a client (and the contract test) can rely on the pairs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import compile_path

from wardrobe.core.edge_limits import FAIL_CLOSED, classify
from wardrobe.core.envelope import ErrorEnvelope
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, ERROR_CODES_KEY
from wardrobe.core.schemas import omit_not_null
from wardrobe.models import Role

ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"
USER_SCHEME = "HTTPBearer"  # the security scheme of users' access tokens (auth/deps.py)
METRICS = ("get", "/metrics")
_EDGE_EXEMPT = ("/health", "/metrics")  # probes and scrapes: no database, no rate limit
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}


@dataclass(frozen=True)
class RouteFacts:
    """What a route's dependencies say about it."""

    permission: str | None
    roles: tuple[str, ...]  # the roles that hold ``permission``
    reaches_dependencies: bool
    parses_body: bool  # FastAPI decodes the body (and answers MALFORMED_REQUEST when it cannot)
    scope: str | None = None  # the API key scope that may call it (core/principal.py ``scoped``)


def _calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute of the app, through routers FastAPI includes by reference."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


def route_facts(app: FastAPI) -> dict[tuple[str, str], RouteFacts]:
    found: dict[tuple[str, str], RouteFacts] = {}
    for route in api_routes(app.routes):
        calls = list(_calls(route.dependant))
        guard = next((c for c in calls if hasattr(c, "permission")), None)
        scoped = next((c for c in calls if hasattr(c, "scope")), None)
        facts = RouteFacts(
            permission=None if guard is None else str(guard.permission),
            roles=tuple(getattr(guard, "roles", ())),
            reaches_dependencies=any(hasattr(c, "part") for c in calls),
            parses_body=route.body_field is not None,
            scope=None if scoped is None else str(scoped.scope),
        )
        for method in route.methods or ():
            found[(method.lower(), route.path)] = facts
    return found


def _example(code: ErrorCode) -> dict[str, Any]:
    body = {"success": False, "code": code.name, "message": code.message("en"), "data": None}
    return {"value": {**body, "request_id": "6f1c0b1e6f3a4d5e"}}


def _envelope_response(codes: list[ErrorCode], status: int) -> dict[str, Any]:
    names = [c.name for c in codes]
    response: dict[str, Any] = {
        "description": " / ".join(names),
        "content": {
            "application/json": {
                "schema": {"allOf": [{"$ref": ENVELOPE_REF}, {"properties": {"code": {"enum": names}}}]},
                "examples": {c.name: _example(c) for c in codes},
            }
        },
    }
    if status in (429, 503):
        # Every 429 carries it; a 503 does when waiting helps (not from the readiness probes).
        response["headers"] = {"Retry-After": {**_RETRY_AFTER, "required": status == 429}}
    return response


def _edge_codes(method: str, path: str, operation: dict[str, Any], facts: RouteFacts | None) -> list[ErrorCode]:
    codes = [ErrorCode.INTERNAL_ERROR]
    if facts is not None:  # a FastAPI route: the JSON guard and the validation handler answer for it
        codes.append(ErrorCode.VALIDATION_FAILED)
    body = operation.get("requestBody", {}).get("content", {})
    if body:
        codes.append(ErrorCode.PAYLOAD_TOO_LARGE)
    if "application/json" in body and facts is not None and facts.parses_body:
        codes.append(ErrorCode.MALFORMED_REQUEST)
    endpoint = classify(method.upper(), path)
    if endpoint is not None and not path.startswith(_EDGE_EXEMPT):
        codes.append(ErrorCode.RATE_LIMITED)
        if endpoint in FAIL_CLOSED:
            codes.append(ErrorCode.DEPENDENCY_UNAVAILABLE)
    if facts is not None and facts.reaches_dependencies:
        codes.append(ErrorCode.DEPENDENCY_UNAVAILABLE)
    if any(USER_SCHEME in requirement for requirement in operation.get("security", [])):
        codes.extend([*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED])
    if facts is not None and facts.scope is not None:
        codes.append(ErrorCode.RATE_LIMITED)
    if facts is not None and facts.permission is not None:
        if ErrorCode.PERMISSION_DENIED not in codes:
            codes.append(ErrorCode.PERMISSION_DENIED)
        if Role.USER.value not in facts.roles:
            codes.append(ErrorCode.TOTP_ENROLMENT_REQUIRED)
    return codes


def _document_permission(operation: dict[str, Any], permission: str, roles: list[str]) -> None:
    operation["x-permission"] = {"permission": permission, "roles": roles}
    note = f"Needs the permission `{permission}` (roles: {', '.join(roles)})."
    operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{note}".strip()


def _merge(existing: dict[str, Any] | None, codes: list[ErrorCode], status: int) -> dict[str, Any]:
    """The response documenting ``codes`` in the envelope, beside what a route documented itself
    in another form for that status (a payment platform's own reply): then either may come."""
    envelope = _envelope_response(codes, status)
    if existing is None or not existing.get("content"):
        return envelope
    own = existing["content"]
    merged = copy.deepcopy(existing)
    merged["description"] = f"{existing.get('description', '')}; or the envelope: {envelope['description']}"
    json_own = own.get("application/json")
    if json_own is None:
        merged["content"]["application/json"] = envelope["content"]["application/json"]
    else:
        schemas = [json_own.get("schema", {}), envelope["content"]["application/json"]["schema"]]
        merged["content"]["application/json"] = {"schema": {"anyOf": schemas}}
    if "headers" in envelope:
        merged.setdefault("headers", {}).update(envelope["headers"])
    return merged


def _parameters_are_never_null(operation: dict[str, Any]) -> None:
    """An optional query or header parameter is absent or a string, never JSON null: FastAPI
    documents ``str | None`` as ``anyOf: [string, null]``, which would tell a client that ``null``
    (sent as the text "null") is a value."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        options = schema.get("anyOf")
        if options and any(o.get("type") == "null" for o in options):
            omit_not_null(schema)


def complete_operation(method: str, path: str, operation: dict[str, Any], facts: RouteFacts | None) -> None:
    _parameters_are_never_null(operation)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    by_status: dict[int, list[ErrorCode]] = {}
    custom: dict[int, dict[str, Any]] = {}
    for status_text, response in list(responses.items()):
        listed = response.pop(ERROR_CODES_KEY, None)
        if listed is not None:
            by_status[int(status_text)] = [ErrorCode[name] for name in listed]
            del responses[status_text]
        elif int(status_text) >= 400 and _is_fastapi_validation(response):
            del responses[status_text]  # FastAPI's own 422 shape, which our handler never sends
        elif int(status_text) >= 400:
            custom[int(status_text)] = responses.pop(status_text)
    for code in _edge_codes(method, path, operation, facts):
        group = by_status.setdefault(code.status, [])
        if code not in group:
            group.append(code)
    for status in sorted({*by_status, *custom}):
        codes = by_status.get(status)
        responses[str(status)] = _merge(custom.get(status), codes, status) if codes else custom[status]
    if facts is not None and facts.permission is not None:
        _document_permission(operation, facts.permission, list(facts.roles))
    if facts is not None and facts.scope is not None:
        operation["x-api-key-scope"] = facts.scope
        note = f"An API key (`Bearer wk_…`) with the scope `{facts.scope}` may call it, as its owner."
        operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{note}".strip()
    operation["responses"] = dict(sorted(responses.items()))


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def complete_document(
    document: dict[str, Any],
    facts: dict[tuple[str, str], RouteFacts],
    *,
    metrics_open: bool = False,
    mounted: dict[str, Any] | None = None,
) -> None:
    """``mounted``: path items of ASGI apps mounted beside the routes (Socket.IO), which FastAPI
    cannot see; they get the same edge answers."""
    document.setdefault("paths", {}).update(copy.deepcopy(mounted or {}))
    if metrics_open and METRICS[1] in document.get("paths", {}):
        # No scrape token configured (development): /metrics asks for none.
        document["paths"][METRICS[1]][METRICS[0]]["security"] = []
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                complete_operation(method, path, operation, facts.get((method, path)))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorEnvelope"] = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    # Every code as one named enum, so a generated client has the type; each response narrows it
    # to its own codes.
    schemas["ErrorCode"] = {
        "title": "ErrorCode",
        "type": "string",
        "enum": [code.name for code in ErrorCode],
        "description": "Every code an error envelope may carry; each response lists the ones it may answer.",
    }
    schemas["ErrorEnvelope"]["properties"]["code"] = {
        "$ref": "#/components/schemas/ErrorCode",
        "examples": ["VALIDATION_FAILED"],
    }
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install(app: FastAPI, *, metrics_open: bool, mounted: dict[str, Any] | None = None) -> None:
    """Serve the completed document at /openapi.json (and to ``app.openapi()``)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            complete_document(document, route_facts(app), metrics_open=metrics_open, mounted=mounted)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(app: FastAPI, path: str) -> list[str] | None:
    """Every method the API documents for ``path`` (for the ``Allow`` header of a 405), or None
    when the path is not an API operation's. Starlette's own 405 names only the methods of the
    first route that matched the path, while several routes may share it (GET, PATCH and DELETE
    of /api/v1/users/me are three)."""
    templates: list[tuple[Any, list[str]]] | None = getattr(app.state, "allowed_methods", None)
    if templates is None:
        templates = [
            (compile_path(template)[0], sorted(m.upper() for m in item if m in _HTTP_METHODS))
            for template, item in app.openapi().get("paths", {}).items()
        ]
        app.state.allowed_methods = templates
    for pattern, methods in templates:
        if pattern.match(path):
            return methods
    return None


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
