"""Shared types of what clients send: the base of every request body model, and bounded ids/dates.

Request bodies are JSON, and JSON already says what type a value is: ``0`` is a number, ``false``
a boolean, ``"0"`` a string. Pydantic's default (lax) mode would convert between them — ``0``
became ``False`` for a provider's ``enabled`` and 1970-01-01 for a ``birthday`` — so a client's
mistake (or a probe) silently changed data. ``InputModel`` is strict: every value must already be
of its field's JSON type.

Strictness alone is not enough, because FastAPI validates the *decoded* JSON in pydantic's Python
mode, where strict also refuses the only form JSON has for dates and enum members: a string. The
types that JSON carries as strings therefore get their own annotations here, which accept exactly
that string form and nothing else: ``IsoDate`` (``"YYYY-MM-DD"``, never a number) and
``EnumValue[E]`` (a member's value). A test walks the OpenAPI document to hold every request
model to this.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import annotated_types
from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict
from pydantic_core import PydanticCustomError

# Ids are BIGINT (or SQLite's 64-bit INTEGER), but the largest id a client may name is 2**53 - 1:
# JavaScript clients (the mini program, the web) read larger numbers inexactly, and JSON Schema
# validators compare numbers as doubles, so a bound above it is not a bound the contract can state.
MAX_ID = 2**53 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# A positive database id, for path and query parameters and for ids inside bodies. The bounds are
# annotated_types rather than ``Path``/``Query`` so that one alias serves every place.
Id = Annotated[int, annotated_types.Ge(1), annotated_types.Le(MAX_ID)]


def omit_not_null(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of an optional field that refuses null: its schema drops the null
    option (``anyOf: [X, null]`` → X), as the field may be omitted but not sent as null."""
    options = schema.pop("anyOf", None)
    if options is None:
        return
    kept = [option for option in options if option.get("type") != "null"]
    if len(kept) == 1:
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept
    if schema.get("default", "absent") is None:
        del schema["default"]


class InputModel(BaseModel):
    """The base of every request body: unknown fields refused, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: Any) -> Any:
    # A date object passes (Python callers); a datetime is a date subclass and would pass too.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass  # e.g. 2023-02-30: reported below like any other bad date
    raise PydanticCustomError("date_type", "must be a date written as YYYY-MM-DD")


# A calendar date as JSON carries it: the string "YYYY-MM-DD". Numbers (Unix times) are refused.
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


def _enum_text(value: Any) -> Any:
    if isinstance(value, str):  # a member of a StrEnum is a str too
        return value
    raise PydanticCustomError("enum_type", "must be one of the listed strings")


E = TypeVar("E", bound=StrEnum)
# A string enum field as JSON carries it: one of its members' values. Lax mode is used for the
# lookup (strict would want the member object itself), after the value was proven to be a string:
# a lax enum would otherwise also take bytes.
EnumValue = Annotated[E, Strict(False), BeforeValidator(_enum_text)]
