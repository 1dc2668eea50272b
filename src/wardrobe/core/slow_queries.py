"""Slow statements: logged with a fingerprint and counted, never with their parameters.

A listener pair on the engine times every cursor execution; one over ``WARDROBE_SLOW_QUERY_MS`` is
logged at WARNING (``slow_query``) with the statement's fingerprint and counted in
``wardrobe_db_slow_queries_total{operation}``. The fingerprint is the statement with every literal
and placeholder replaced by ``?`` (so one query shape is one fingerprint whatever its values), plus a
short hash to group on. Parameters are never logged: they hold phones, tokens and codes.

The normaliser is a few regular expressions rather than a SQL parser (sqlglot, sqlparse): the
statements are SQLAlchemy's own, with bound parameters, so literals are rare and simple, and a parser
per slow statement on three dialects would cost more and fail on dialect corners where these cannot.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import DB_SLOW_QUERIES

log = get_logger("wardrobe.db")
_TIMERS = "wardrobe_slow_query_started"
MAX_FINGERPRINT = 600  # characters of the normalised statement kept in the log line

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"'(?:[^']|'')*'"), "?"),  # string literals ('' escapes a quote)
    (re.compile(r"\bx'[0-9a-f]*'", re.IGNORECASE), "?"),  # hex literals
    (re.compile(r"%\(\w+\)s|%s|\$\d+|(?<![:\w]):\w+|\?"), "?"),  # placeholders of every driver
    (re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.IGNORECASE), "?"),  # numbers
    (re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)"), "(?+)"),  # IN lists of any length: one shape
    (re.compile(r"\s+"), " "),
)
_OPERATIONS = frozenset({"select", "insert", "update", "delete"})


def fingerprint(statement: str) -> tuple[str, str]:
    """The normalised statement (literals and placeholders as ``?``) and a 12-hex-digit hash of it."""
    text = statement
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    text = text.strip()
    return text, hashlib.sha256(text.encode()).hexdigest()[:12]


def operation_of(statement: str) -> str:
    head = statement.lstrip().split(None, 1)
    word = head[0].lower() if head else ""
    if word == "with":  # a CTE: the verb after it decides
        found = re.search(r"\)\s*(select|insert|update|delete)\b", statement, re.IGNORECASE)
        word = found.group(1).lower() if found else "select"
    return word if word in _OPERATIONS else "other"


def watch_slow_queries(engine: AsyncEngine, threshold_ms: float) -> None:
    """Time every statement of ``engine``; nothing is attached when ``threshold_ms`` is 0."""
    if threshold_ms <= 0:
        return

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        conn.info.setdefault(_TIMERS, []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        timers = conn.info.get(_TIMERS)
        if not timers:
            return
        ms = (time.perf_counter() - timers.pop()) * 1000
        if ms < threshold_ms:
            return
        operation = operation_of(statement)
        DB_SLOW_QUERIES.labels(operation).inc()
        text, digest = fingerprint(statement)
        log.warning(
            "slow_query",
            ms=round(ms, 1),
            operation=operation,
            fingerprint=text[:MAX_FINGERPRINT],
            fingerprint_id=digest,
            executemany=executemany,
        )

    def failed(context: Any) -> None:
        # A statement that raised never reaches after_cursor_execute: drop its timer.
        conn = getattr(context, "connection", None)
        timers = conn.info.get(_TIMERS) if conn is not None else None
        if timers:
            timers.pop()

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    event.listen(engine.sync_engine, "handle_error", failed)
