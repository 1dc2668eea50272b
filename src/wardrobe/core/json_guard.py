"""Refuse JSON values that no model can be trusted to catch, for every route at once.

Python's ``json`` decodes ``"\\ud800"`` (and raw UTF-8-encoded surrogates) into a str holding a
lone surrogate: not valid Unicode, so the database driver and the response encoder fail on it
later, as a 500, after part of the work was done. It also decodes integers of any size and
``NaN``/``Infinity``/``1e999`` into values that overflow a BIGINT column or cannot be written back
as JSON. Such values can hide anywhere, including in free-form fields (a task's ``inputs``), so
they are checked on the decoded body as a whole, by one app-wide dependency
(``FastAPI(dependencies=...)``) that therefore covers every route, present and future, before
any of its other dependencies or its body model run: a refused request has written nothing.

The answer is the usual ``422 VALIDATION_FAILED`` naming each offending field (``inputs.prompt``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from email.message import Message
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from wardrobe.core.schemas import INT64_MAX, INT64_MIN

Path = tuple[str | int, ...]

_NOT_TEXT = "must be valid Unicode text (it contains a lone surrogate code point)"
_KEY_NOT_TEXT = "its keys must be valid Unicode text (one contains a lone surrogate code point)"
_TOO_BIG = f"must be an integer from {INT64_MIN} to {INT64_MAX}"
_NOT_FINITE = "must be a finite number"
# The app-wide rules (the API description states them); any body may be refused with these.
GUARD_MESSAGES = frozenset({_NOT_TEXT, _KEY_NOT_TEXT, _TOO_BIG, _NOT_FINITE})
# Enough to name every field of a sensible body; a body made of thousands of bad values gets the
# first ones, which is all a client needs to fix it.
_MAX_PROBLEMS = 20


def _is_json(content_type: str | None) -> bool:
    """The same test FastAPI applies before it decodes a body as JSON."""
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _is_text(value: str) -> bool:
    if value.isascii():  # O(1) in CPython: the common case costs nothing
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def problems(value: Any) -> Iterator[tuple[Path, str]]:
    """Each (path, message) of a value in decoded JSON that cannot be stored or sent back, in
    document order. Iterative: JSON nested as deep as the decoder allows must not exhaust the
    Python stack here."""
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not _is_text(item):
                yield path, _NOT_TEXT
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                yield path, _TOO_BIG
        elif isinstance(item, float):
            if not math.isfinite(item):
                yield path, _NOT_FINITE
        elif isinstance(item, dict):
            children: list[tuple[Path, Any]] = []
            for key, child in item.items():
                if _is_text(key):
                    children.append(((*path, key), child))
                else:
                    # The key itself cannot be echoed back: name the object that holds it.
                    yield path, _KEY_NOT_TEXT
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([((*path, index), child) for index, child in enumerate(item)]))


async def refuse_unstorable_json(request: Request) -> None:
    """App-wide dependency: a JSON body with a lone surrogate, an integer beyond 64 bits or a
    non-finite number anywhere in it is refused with 422, naming the fields."""
    if not _is_json(request.headers.get("content-type")):
        return
    try:
        # Cached: on routes with a body model FastAPI has decoded it already, on this request.
        body = await request.json()
    except ValueError:
        # Not JSON after all (or not UTF-8): routes that read their own bodies answer that, and
        # FastAPI refused it already on routes with a body model.
        return
    found = []
    for path, message in problems(body):
        found.append({"type": "value_error", "loc": ("body", *path), "msg": message, "input": None})
        if len(found) == _MAX_PROBLEMS:
            break
    if found:
        raise RequestValidationError(found)
