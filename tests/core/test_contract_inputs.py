"""Bad input never gives a 500, on every operation of the OpenAPI document (present and future).

Each test walks the app's own OpenAPI document and sends one kind of bad input to every operation
that takes it: lone surrogates in JSON bodies, in paths, queries and headers; integers beyond 64
bits in path and query parameters; values of the wrong JSON type in every field of every body.
Requests carry an admin's token, so that they get as far into each route as input can take them.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import httpx
from fastapi.routing import APIRoute
from pydantic import BaseModel

from tests.conftest import Api
from tests.core.openapi_walk import Leaf, Operation, leaves, names_field, non_null, operations
from tests.fixtures.auth import Session, login_as
from wardrobe.core.pagination import encode_cursor
from wardrobe.core.schemas import MAX_ID, InputModel

SURROGATE_MESSAGE = "应为有效的 Unicode 文本（含有孤立的代理码点）"  # as answered without Accept-Language
# U+D800 encoded as UTF-8 would be, percent-encoded: what a client can put in a URL or a header.
ENCODED_SURROGATE = "%ED%A0%80"
RAW_SURROGATE = b"\xed\xa0\x80"


def send_json(api: Api, op: Operation, body: Any, headers: dict[str, str]) -> Any:
    # json.dumps escapes a lone surrogate as \\ud800: the bytes are what a client would send.
    content = json.dumps(body).encode()
    return api.client.request(
        op.method, op.url(), content=content, headers={**headers, "Content-Type": "application/json"}
    )


def problems(resp: httpx.Response) -> list[dict[str, str]]:
    assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED"), resp.text
    found: list[dict[str, str]] = resp.json()["data"]
    return found


async def admin_and_spec(api: Api) -> tuple[Session, list[Operation], dict[str, Any]]:
    admin = await login_as(api, "admin")
    document = api.app.openapi()
    return admin, operations(document), document


async def test_a_lone_surrogate_anywhere_in_any_json_body_is_a_422_naming_the_field(api: Api) -> None:
    admin, ops, document = await admin_and_spec(api)
    checked = 0
    for op in ops:
        schema = op.json_body()
        if schema is None:
            continue
        named = [leaf for leaf in leaves(document, schema) if leaf.schema.get("type") == "string"]
        for leaf in named or [Leaf(("note",), {})]:
            found = problems(await send_json(api, op, leaf.body("a\ud800b"), admin.headers))
            assert {"field": leaf.name, "message": SURROGATE_MESSAGE} in found, (op.method, op.template, found)
            checked += 1
        # Deep inside free-form values too (a task's inputs, an account's options), and in keys.
        nested = {"extra": [{"deep": {"x": "\udfff"}}], "bad\udc80key": 1}
        found = problems(await send_json(api, op, nested, admin.headers))
        assert {"field": "extra.0.deep.x", "message": SURROGATE_MESSAGE} in found, (op.template, found)
        assert any(item["field"] == "body" for item in found), (op.template, found)
    assert checked > 40  # the document really was walked


async def test_no_operation_answers_500_to_surrogates_in_body_path_query_or_headers(api: Api) -> None:
    admin, ops, _ = await admin_and_spec(api)
    for op in ops:
        path_values = {p["name"]: ENCODED_SURROGATE for p in op.parameters("path")}
        query = "&".join(f"{p['name']}={ENCODED_SURROGATE}" for p in op.parameters("query"))
        url = op.url(**path_values) + (f"?{query}" if query else "")
        token = admin.headers["Authorization"].encode()
        headers: list[dict[bytes, bytes]] = [
            {
                b"Authorization": token,
                b"Idempotency-Key": b"key-" + RAW_SURROGATE * 3,
                b"Accept-Language": RAW_SURROGATE,
            },
            {b"Authorization": b"Bearer " + RAW_SURROGATE, b"X-Request-ID": RAW_SURROGATE},
        ]
        for header in headers:
            resp = await api.client.request(op.method, url, headers=header)
            assert resp.status_code < 500, (op.method, url, resp.text)
            # Any JSON body, declared or not (notifications and callbacks read their own).
            resp = await api.client.request(
                op.method,
                op.url(),
                content=b'{"x": "\\ud800"}',
                headers={**header, b"Content-Type": b"application/json"},
            )
            assert resp.status_code < 500, (op.method, op.template, resp.text)
            if op.json_body() is not None:
                assert problems(resp) == [{"field": "x", "message": SURROGATE_MESSAGE}]


async def test_integers_beyond_64_bits_in_paths_and_queries_are_a_422(api: Api) -> None:
    admin, ops, document = await admin_and_spec(api)
    checked = 0
    for op in ops:
        for where in ("path", "query"):
            for param in op.parameters(where):
                if non_null(document, param.get("schema", {})).get("type") != "integer":
                    continue
                for value in (2**63, -(2**63) - 1, 10**30):
                    if where == "path":
                        url = op.url(**{param["name"]: str(value)})
                    else:
                        url = f"{op.url()}?{param['name']}={value}"
                    resp = await api.client.request(op.method, url, headers=admin.headers, json={})
                    assert param["name"] in {p["field"] for p in problems(resp)}, (op.method, url, resp.text)
                    checked += 1
    assert checked >= 30


async def test_every_integer_parameter_is_bounded_to_64_bits_in_the_contract(api: Api) -> None:
    _, ops, document = await admin_and_spec(api)
    for op in ops:
        for param in op.spec.get("parameters", []):
            schema = non_null(document, param.get("schema", {}))
            if schema.get("type") == "integer":
                assert schema.get("minimum", -(2**64)) >= -(2**63), (op.template, param["name"])
                assert schema.get("maximum", 2**64) <= MAX_ID, (op.template, param["name"])


async def test_cursors_of_ids_beyond_64_bits_are_a_422(api: Api) -> None:
    admin, ops, _ = await admin_and_spec(api)
    paged = [op for op in ops if any(p["name"] == "cursor" for p in op.parameters("query"))]
    assert len(paged) >= 5
    for op in paged:
        for cursor in (encode_cursor(2**63), encode_cursor(10**40), "aWQ6IDc", "aWQ6Kzc"):  # "id: 7", "id:+7"
            resp = await api.client.get(f"{op.url()}?cursor={cursor}", headers=admin.headers)
            assert problems(resp) == [{"field": "cursor", "message": "不是本接口给出的游标"}], op


async def test_json_numbers_a_database_or_encoder_cannot_hold_are_a_422_naming_the_field(api: Api) -> None:
    admin, ops, document = await admin_and_spec(api)
    for op in ops:
        schema = op.json_body()
        if schema is None:
            continue
        for leaf in leaves(document, schema):
            if leaf.schema.get("type") not in ("integer", "number"):
                continue
            for value in (2**64, -(2**63) - 1, float("nan"), float("inf")):
                found = problems(await send_json(api, op, leaf.body(value), admin.headers))
                assert any(names_field(p["field"], leaf) for p in found), (op.template, leaf.name, value, found)
        for raw in (b'{"n": 18446744073709551616}', b'{"n": NaN}', b'{"n": -Infinity}', b'{"n": 1e999}'):
            resp = await api.client.request(
                op.method, op.url(), content=raw, headers={**admin.headers, "Content-Type": "application/json"}
            )
            assert [p["field"] for p in problems(resp)] == ["n"], (op.template, raw)


# Values of the wrong JSON type for each declared type, and right ones that must pass: lax
# validation turned 0 into False or 1970-01-01, "5" into 5, 5.0 into 5.
WRONG: dict[str, list[Any]] = {
    "boolean": [0, 1, "true", "false"],
    "integer": ["5", 5.0, True],
    "number": ["1.5", True],
    "string": [5, 1.5, True],
}


def wrong_values(leaf: Leaf) -> list[Any]:
    if leaf.schema.get("format") == "date":
        return [0, 86400, "0", "1700000000", 1.5]
    if "enum" in leaf.schema:
        return [0, True, *WRONG.get(str(leaf.schema.get("type")), [])]
    return WRONG.get(str(leaf.schema.get("type")), [])


def right_values(leaf: Leaf) -> list[Any]:
    if leaf.schema.get("format") == "date":
        return ["2000-01-02"]
    if "enum" in leaf.schema:
        return list(leaf.schema["enum"])
    if leaf.schema.get("type") == "boolean":
        return [True, False]
    return []


async def test_every_body_field_takes_only_its_own_json_type(api: Api) -> None:
    admin, ops, document = await admin_and_spec(api)
    checked = 0
    for op in ops:
        schema = op.json_body()
        if schema is None:
            continue
        for leaf in leaves(document, schema):
            for value in wrong_values(leaf):
                resp = await send_json(api, op, leaf.body(value), admin.headers)
                found = problems(resp)
                assert any(names_field(p["field"], leaf) for p in found), (op.template, leaf.name, value, found)
                checked += 1
            for value in right_values(leaf):
                resp = await send_json(api, op, leaf.body(value), admin.headers)
                assert resp.status_code < 500, (op.template, leaf.name, value, resp.text)
                if resp.status_code == 422:
                    fields = [p["field"] for p in resp.json()["data"]]
                    assert not any(names_field(f, leaf) for f in fields), (op.template, leaf.name, value, fields)
    assert checked > 150


def _models(annotation: Any) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.add(annotation)
        for item in annotation.model_fields.values():
            found |= _models(item.annotation)
    elif isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found |= _models(arg)
    return found


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        included = getattr(route, "original_router", None)  # FastAPI includes routers by reference
        if included is not None:
            found += _api_routes(included.routes)
    return found


async def test_every_request_body_model_is_an_input_model(api: Api) -> None:
    """What makes the tests above hold for bodies added later: they are InputModels or fail here."""
    models: set[type[BaseModel]] = set()
    for route in _api_routes(api.app.routes):
        if route.body_field is not None:
            models |= _models(route.body_field.field_info.annotation)
    assert len(models) > 20
    lax = sorted(m.__name__ for m in models if not issubclass(m, InputModel))
    assert lax == []
