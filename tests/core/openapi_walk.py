"""Walks over the app's own OpenAPI document, so that input tests cover every operation there is,
including ones added after the tests were written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    spec: dict[str, Any]

    def url(self, **values: str) -> str:
        """The path with each ``{param}`` replaced by ``values[param]`` (default ``"1"``)."""
        return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", lambda m: values.get(m.group(1), "1"), self.template)

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p.get("in") == where]

    def json_body(self) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        schema: dict[str, Any] | None = content.get("application/json", {}).get("schema")
        return schema


def operations(document: dict[str, Any]) -> list[Operation]:
    return [
        Operation(method.upper(), template, spec)
        for template, methods in document["paths"].items()
        for method, spec in methods.items()
    ]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = document["components"]["schemas"][name]
    return schema


def non_null(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` (``anyOf: [X, null]``) → X; anything else resolved as it is."""
    schema = resolve(document, schema)
    options = [resolve(document, s) for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return options[0] if len(options) == 1 else schema


@dataclass(frozen=True)
class Leaf:
    """A scalar field reachable in a request body, and the constants (union tags) that select the
    objects on the way to it."""

    path: JsonPath
    schema: dict[str, Any]
    scaffold: tuple[tuple[JsonPath, Any], ...] = field(default=())

    def body(self, value: Any) -> Any:
        """A body holding only the scaffold and ``value`` at this leaf's path."""
        root: Any = {} if not self.path or isinstance(self.path[0], str) else []
        for path, item in (*self.scaffold, (self.path, value)):
            root = _put(root, path, item)
        return root

    @property
    def name(self) -> str:
        return ".".join(str(p) for p in self.path)


def _put(root: Any, path: JsonPath, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    fresh: Any = {} if rest and isinstance(rest[0], str) else []
    if isinstance(head, int):
        items: list[Any] = root if isinstance(root, list) else []
        while len(items) <= head:
            items.append(fresh)
        items[head] = _put(items[head], rest, value)
        return items
    fields: dict[str, Any] = root if isinstance(root, dict) else {}
    fields[head] = _put(fields.get(head, fresh), rest, value)
    return fields


def leaves(
    document: dict[str, Any],
    schema: dict[str, Any],
    path: JsonPath = (),
    scaffold: tuple[tuple[JsonPath, Any], ...] = (),
    depth: int = 0,
) -> Iterator[Leaf]:
    """Every scalar property of an object schema, through nested objects, arrays of objects and
    tagged unions (each variant with its tag set), up to a few levels deep."""
    schema = non_null(document, schema)
    if depth > 5:
        return
    discriminator = schema.get("discriminator")
    if discriminator:
        # A tagged union: each variant once, with its tag (the first one mapped to it) set.
        tag_name, seen = discriminator["propertyName"], set()
        for tag, ref in discriminator["mapping"].items():
            if ref not in seen:
                seen.add(ref)
                tagged = (*scaffold, ((*path, tag_name), tag))
                yield from _object_leaves(document, resolve(document, {"$ref": ref}), path, tagged, depth, tag_name)
        return
    variants = [resolve(document, v) for v in schema.get("oneOf") or schema.get("anyOf") or []]
    if variants:
        # Tagged unions of objects are walked variant by variant; a union of scalar types
        # (``str | int``) has no single wrong type to send, so it is left out.
        for variant in variants:
            if variant.get("properties"):
                yield from leaves(document, variant, path, scaffold, depth + 1)
        return
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        yield from leaves(document, schema["items"], (*path, 0), scaffold, depth + 1)
        return
    if not schema.get("properties"):
        if path and "type" in schema and schema["type"] not in ("object", "array"):
            yield Leaf(path, schema, scaffold)
        return
    yield from _object_leaves(document, schema, path, scaffold, depth, None)


def _object_leaves(
    document: dict[str, Any],
    schema: dict[str, Any],
    path: JsonPath,
    scaffold: tuple[tuple[JsonPath, Any], ...],
    depth: int,
    tag_name: str | None,
) -> Iterator[Leaf]:
    properties: dict[str, Any] = schema.get("properties", {})
    consts = {name: resolve(document, p)["const"] for name, p in properties.items() if "const" in resolve(document, p)}
    if tag_name is not None:
        consts.pop(tag_name, None)  # the scaffold sets the tag already
    tags = tuple(((*path, name), value) for name, value in consts.items())
    for name, prop in properties.items():
        if name == tag_name or "const" in resolve(document, prop):
            continue
        yield from leaves(document, prop, (*path, name), scaffold + tags, depth + 1)


def names_field(reported: str, leaf: Leaf) -> bool:
    """Whether an error's ``field`` names ``leaf``. Pydantic puts a union's tag into the location
    (``password.phone``, ``definition.steps.0.sync_api.retries``): those extra segments are
    allowed; the leaf's own segments must all appear, in order."""
    wanted = [str(p) for p in leaf.path]
    got = reported.split(".")
    position = 0
    for segment in got:
        if position < len(wanted) and segment == wanted[position]:
            position += 1
    return position == len(wanted) and got[-1] == wanted[-1]
