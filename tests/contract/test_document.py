"""What the OpenAPI document promises beyond what the fuzzer checks: readable, unique operation ids
for generated clients; a 405 that lists every method of the path; patterns that state exactly
what the server takes (cursors, phone numbers, rate policies)."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Api
from tests.core.openapi_walk import Operation, operations
from tests.fixtures.auth import login_as
from wardrobe.app import create_app
from wardrobe.core.errors import ValidationFailed
from wardrobe.core.pagination import decode_cursor, encode_cursor
from wardrobe.core.ratelimit import parse_policy
from wardrobe.modules.auth.phone import normalize_phone
from wardrobe.settings import Environment, Settings

OPERATION_ID = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
DOCUMENT = create_app(Settings(_env_file=None, env=Environment.TEST)).openapi()


def test_every_operation_has_a_readable_unique_id() -> None:
    ids = {(op.method, op.template): op.spec.get("operationId", "") for op in operations(DOCUMENT)}
    assert all(OPERATION_ID.match(found) for found in ids.values()), sorted(ids.values())
    assert len(set(ids.values())) == len(ids)
    # Module first, then the noun and the verb: what a generated client's methods are named.
    for key, expected in {
        ("POST", "/api/v1/tasks"): "tasks_create",
        ("GET", "/api/v1/tasks"): "tasks_list",
        ("GET", "/api/v1/tasks/{task_id}"): "tasks_get",
        ("POST", "/api/v1/tasks/{task_id}/cancel"): "tasks_cancel",
        ("POST", "/api/v1/admin/orders/{order_no}/refund"): "admin_orders_refund",
        ("GET", "/api/v1/auth/sessions"): "auth_sessions_list",
        ("DELETE", "/api/v1/auth/sessions/{session_id}"): "auth_sessions_delete",
        ("POST", "/api/v1/auth/login"): "auth_login",
        ("PATCH", "/api/v1/users/me"): "users_me_update",
        ("GET", "/metrics"): "ops_metrics_get",
    }.items():
        assert ids[key] == expected, (key, ids[key])


async def test_a_405_lists_every_method_of_the_path(api: Api) -> None:
    admin = await login_as(api, "admin")
    by_path: dict[str, tuple[Operation, set[str]]] = {}
    for op in operations(api.app.openapi()):
        by_path.setdefault(op.template, (op, set()))[1].add(op.method)
    assert len(by_path) > 50
    for template, (op, methods) in by_path.items():
        unsupported = next(m for m in ("PATCH", "PUT", "DELETE", "POST", "GET") if m not in methods)
        engine_io = template.startswith("/socket.io")  # which answers OPTIONS itself (a CORS preflight)
        for method in {unsupported} if engine_io else {unsupported, "OPTIONS"}:
            resp = await api.client.request(method, op.url(), headers=admin.headers)
            assert resp.status_code == 405, (method, template)
            if not engine_io:  # Engine.IO answers in text, the API in the envelope
                assert resp.json()["code"] == "METHOD_NOT_ALLOWED", (method, template)
            # OPTIONS is implicit (Engine.IO answers it as a CORS preflight); the rest is the document's.
            assert set(resp.headers["allow"].split(", ")) - {"OPTIONS"} == methods, (method, template)


def _parameter_pattern(path: str, name: str) -> str:
    [found] = [p for p in DOCUMENT["paths"][path]["get"]["parameters"] if p["name"] == name]
    pattern: str = found["schema"]["pattern"]
    return pattern


def _body_pattern(schema_name: str, field: str) -> str:
    schema: dict[str, Any] = DOCUMENT["components"]["schemas"][schema_name]["properties"][field]
    return str(next(s["pattern"] for s in (schema, *schema.get("anyOf", [])) if "pattern" in s))


CURSOR = _parameter_pattern("/api/v1/tasks", "cursor")
PHONE = _body_pattern("PasswordLogin", "phone")
POLICY = _body_pattern("AccountCreate", "rate")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _accepts(parse: Any, value: str) -> bool:
    try:
        parse(value)
    except (ValueError, ValidationFailed):
        return False
    return True


@FAST
@given(st.from_regex(CURSOR, fullmatch=True))
def test_every_string_the_cursor_pattern_allows_is_a_cursor(cursor: str) -> None:
    if cursor:  # empty is the first page
        assert encode_cursor(decode_cursor(cursor)) == cursor


@FAST
@given(st.integers(min_value=1, max_value=10**18 - 1))
def test_every_cursor_the_api_gives_out_matches_its_pattern(last_id: int) -> None:
    assert re.fullmatch(CURSOR, encode_cursor(last_id))


@FAST
@given(st.text(alphabet="aWQ6MNODTjzAEIQUYcgkwxy012345-_=+/ \n", max_size=30))
def test_the_server_takes_a_cursor_exactly_when_the_pattern_does(text: str) -> None:
    assert _accepts(decode_cursor, text) == (bool(text) and re.fullmatch(CURSOR, text) is not None)


@FAST
@given(st.from_regex(PHONE, fullmatch=True))
def test_every_phone_the_pattern_allows_is_taken(phone: str) -> None:
    assert re.fullmatch(r"1[3-9][0-9]{9}", normalize_phone(phone))


@FAST
@given(st.text(alphabet="+86 -0123456789\n\t١", max_size=24))
def test_the_server_takes_a_phone_exactly_when_the_pattern_does(text: str) -> None:
    assert _accepts(normalize_phone, text) == (re.fullmatch(PHONE, text) is not None)


@FAST
@given(st.from_regex(POLICY, fullmatch=True))
def test_every_rate_policy_the_pattern_allows_is_taken(policy: str) -> None:
    # Taken as written: one window per ";"-separated part, each allowing the amount it names.
    parts = [part for part in policy.split(";") if part]
    items = parse_policy(policy)
    assert [item.amount for item in items] == [int(part.split("/")[0]) for part in parts]


@FAST
@given(st.text(alphabet="0123456789/;, persecondminutehourday", max_size=30))
def test_the_server_takes_a_rate_policy_exactly_when_the_pattern_does(text: str) -> None:
    assert _accepts(parse_policy, text) == (re.fullmatch(POLICY, text) is not None)
