"""Form schemas: JSON Schema 2020-12, checked when saved and enforced on every task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

# A string property with this format names an uploaded image (an object key from /uploads).
IMAGE_FORMAT = "image-key"
_format_checker = FormatChecker()


def schema_problems(schema: Mapping[str, Any]) -> list[str]:
    """Why this is not an acceptable form schema (empty if it is)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [exc.message]
    problems = []
    if schema.get("type") != "object":
        problems.append('the top level must be {"type": "object", ...}')
    if schema.get("additionalProperties", True) is not False:
        problems.append("additionalProperties must be false, so unknown inputs are refused")
    return problems


def input_errors(schema: Mapping[str, Any], inputs: Any) -> list[dict[str, str]]:
    """Every violation as ``{field, message}``, with dotted paths under ``inputs``."""
    validator = Draft202012Validator(schema, format_checker=_format_checker)
    items = []
    for error in sorted(validator.iter_errors(inputs), key=lambda e: list(e.absolute_path)):
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = next((r for r in error.validator_value if r not in error.instance), None)
            if missing is not None:
                path.append(str(missing))
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            extra = sorted(k for k in error.instance if k not in allowed)
            if extra:
                path.append(extra[0])
        items.append({"field": ".".join(["inputs", *path]), "message": error.message[:200]})
    return items


def image_fields(schema: Mapping[str, Any]) -> list[str]:
    return [
        name
        for name, prop in schema.get("properties", {}).items()
        if isinstance(prop, dict) and prop.get("format") == IMAGE_FORMAT
    ]
