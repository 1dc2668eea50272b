"""Exception handlers: every failure, ours or the framework's, leaves in the envelope."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from limits.errors import StorageError
from redis import exceptions as redis_exc
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from wardrobe.core.context import lang_var
from wardrobe.core.contract import allowed_methods
from wardrobe.core.envelope import error_response
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.i18n import localize_items, pydantic_message
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import DEPENDENCY_FAILURES

log = get_logger("wardrobe.errors")

_HTTP_STATUS_CODES = {
    400: ErrorCode.MALFORMED_REQUEST,
    401: ErrorCode.AUTH_REQUIRED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    422: ErrorCode.VALIDATION_FAILED,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.DEPENDENCY_UNAVAILABLE,
}


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_items(errors: Any) -> list[dict[str, str]]:
    """Pydantic's errors as ``{field, message}`` items, each message in the request's language."""
    lang = lang_var.get()
    return [{"field": _field_path(err.get("loc", ())), "message": pydantic_message(err, lang)} for err in errors]


async def app_error_handler(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, AppError):
        raise TypeError(type(exc))
    if exc.code.status >= 500:
        log.error("app_error", error_code=exc.code.name, detail=exc.detail)
    # The messages in data are written in English by the code that raised them.
    return error_response(exc.code, localize_items(exc.data, lang_var.get()), exc.headers)


async def validation_error_handler(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):
        raise TypeError(type(exc))
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(ErrorCode.MALFORMED_REQUEST)
    return error_response(ErrorCode.VALIDATION_FAILED, validation_items(errors))


async def http_error_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):
        raise TypeError(type(exc))
    code = _HTTP_STATUS_CODES.get(exc.status_code, ErrorCode.INTERNAL_ERROR)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405 and isinstance(request.app, FastAPI):
        # RFC 9110: every method the resource supports, not only those of the first route matched.
        methods = allowed_methods(request.app, request.url.path)
        if methods:
            headers["Allow"] = ", ".join(methods)
    return error_response(code, None, headers or None)


# Failures that mean "a dependency is down or overloaded", not "our code is wrong": the client
# gets 503 DEPENDENCY_UNAVAILABLE with Retry-After and may try again; nothing was committed (the
# request's transaction rolled back). Connections are re-established by the pools on their own
# (pre-ping for the database, reconnect for Redis) once the dependency is back.
_DATABASE_DOWN: tuple[type[Exception], ...] = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
_REDIS_DOWN: tuple[type[Exception], ...] = (
    redis_exc.ConnectionError,
    redis_exc.TimeoutError,
    redis_exc.BusyLoadingError,
    StorageError,
)
RETRY_AFTER_SECONDS = "5"


def _dependency(exc: Exception) -> str | None:
    if isinstance(exc, _DATABASE_DOWN) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated):
        return "database"
    if isinstance(exc, _REDIS_DOWN):
        return "redis"
    return None


async def dependency_error_handler(_: Request, exc: Exception) -> Response:
    dependency = _dependency(exc)
    if dependency is None:
        return await unhandled_error_handler(_, exc)
    DEPENDENCY_FAILURES.labels(dependency).inc()
    log.error("dependency_unavailable", dependency=dependency, error_type=type(exc).__name__)
    return error_response(ErrorCode.DEPENDENCY_UNAVAILABLE, None, {"Retry-After": RETRY_AFTER_SECONDS})


async def unhandled_error_handler(_: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return error_response(ErrorCode.INTERNAL_ERROR)


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    for kind in (*_DATABASE_DOWN, sa_exc.DBAPIError, *_REDIS_DOWN):
        app.add_exception_handler(kind, dependency_error_handler)
    app.add_exception_handler(Exception, unhandled_error_handler)
