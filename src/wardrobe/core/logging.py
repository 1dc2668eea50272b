"""Structured JSON logs with request id, user id and redaction of personal data and secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from wardrobe.core.context import request_id_var, user_id_var

# Keys whose values never reach a log line, whatever their content.
_SECRET_KEYS = re.compile(
    r"(pass(word)?|secret|token|authorization|cookie|code|otp|session_key|id_number|api_key|signature)",
    re.IGNORECASE,
)
# Mainland mobile numbers (with or without +86) and 18-character resident ID numbers.
_PHONE = re.compile(r"(?<!\d)(\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-_.=]+", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# Keys that look secret by name but hold safe metadata.
_SAFE_KEYS = frozenset({"code_name", "status_code", "error_code", "event", "level", "status"})
# Values the service itself generates (never user data): not scanned, which keeps the access log
# cheap — it is written for every request. A task's public id (32 hex characters) is one: scanned,
# about one in a thousand holds eleven digits that read as a mobile number and came out masked,
# so the log named a task that does not exist.
_UNSCANNED = frozenset(
    {"level", "logger", "timestamp", "request_id", "method", "route", "status", "latency_ms", "user_id", "task"}
)


def mask_phone(phone: str) -> str:
    digits = phone[-11:]
    if len(digits) < 7:
        return "****"
    return f"{digits[:3]}****{digits[-4:]}"


def redact_text(text: str) -> str:
    text = _BEARER.sub(r"\1[REDACTED]", text)
    text = _JWT.sub("[REDACTED_JWT]", text)
    text = _ID_NUMBER.sub(r"\1********\2", text)
    return _PHONE.sub(lambda m: f"{m.group(2)}****{m.group(4)}", text)


def _redact_value(key: str, value: Any) -> Any:
    if key not in _SAFE_KEYS and _SECRET_KEYS.search(key) and value is not None:
        return "[REDACTED]"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key not in _UNSCANNED:
            event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _add_context(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict.setdefault("request_id", request_id_var.get())
    user_id = user_id_var.get()
    if user_id is not None:
        event_dict.setdefault("user_id", user_id)
    return event_dict


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    """Route structlog and the standard library through one JSON renderer with redaction last."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_context,
        structlog.processors.format_exc_info,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        # A level the root logger drops is dropped before any processor runs (timestamp, context,
        # rendering): the access log at INFO costs nothing when the level is WARNING.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore", "aiosqlite", "asyncio", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
