"""The contract fuzzer: schemathesis against the embedded app, in process (ASGI), on SQLite.

``run_fuzzer`` runs schemathesis' engine (what ``schemathesis run`` runs: the examples, coverage,
fuzzing and stateful phases) over every operation of the app's own /openapi.json with every
check it has, and returns what it found. The run is deterministic (fixed seed, derandomized
generation, no example database) so that CI is stable; ``WARDROBE_CONTRACT_EXAMPLES`` sets the
examples per operation (20 in CI, as the outside review used; raise it to search harder locally)
and ``WARDROBE_CONTRACT_SEED`` another seed.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from fastapi import FastAPI
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure
from schemathesis.engine import events, from_schema
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
from schemathesis.python import asgi

from tests.conftest import Backend, make_settings
from tests.contract.identities import Identities, Identity
from wardrobe.core.i18n import translate
from wardrobe.core.json_guard import GUARD_MESSAGES
from wardrobe.core.openapi import SERVER_CHECK_KEY
from wardrobe.settings import Settings

# The guard's sentences as the answers carry them: in Chinese unless a case asks for English.
GUARD_SENTENCES = GUARD_MESSAGES | {translate(m, "zh") for m in GUARD_MESSAGES}
EXAMPLES = int(os.environ.get("WARDROBE_CONTRACT_EXAMPLES", "20"))
SEED = int(os.environ.get("WARDROBE_CONTRACT_SEED", "20260514"))
ADMIN_PHONE = "13700000001"
ADMIN_PASSWORD = "Contract-fuzz-admin-7a1c"  # a test account's, made for this run
METRICS_TOKEN = "contract-fuzz-metrics-token-0123456789abcdef"  # what Prometheus would send

# Refusals of well-formed data for what it means, not its shape (a wrong SMS code, no quota, a
# rule beyond JSON Schema): accepted answers to positive data besides schemathesis' defaults.
# `refused_only_for_its_meaning` below holds 400 and 422 to exactly that.
POSITIVE_ACCEPTED = ["2xx", "3xx", "400", "401", "402", "403", "404", "409", "422", "429", "5xx"]


def fuzz_settings(database: Path) -> Settings:
    """The embedded app as a newcomer runs it, seeded, with the limits that exist to slow one
    client down opened up. The fuzzer is one client sending thousands of requests a minute, many
    to the same few phone numbers and accounts (the document's examples); with the production
    limits most of them would be answered 429 before reaching any validation or rule, and the
    run would test the rate limiter instead of the contract. The limits themselves are tested
    with small windows of their own (tests/core/test_edge_limits.py, tests/modules/auth). The
    captcha is off, as in embedded mode by default."""
    return make_settings(
        Backend("sqlite", f"sqlite+aiosqlite:///{database}", ""),
        auto_migrate=True,
        seed_demo_data=True,
        sms_cooldown_seconds=1,
        sms_daily_cap_per_phone=1_000_000,
        sms_hourly_cap_per_ip=1_000_000,
        sms_daily_cap_per_ip=1_000_000,
        login_failure_limits="1000000/minute",
        login_failure_limits_per_account="1000000/minute",
        login_limit_per_ip="1000000/minute",
        upload_rate_limits="1000000/minute",
        captcha_enabled=False,
        metrics_token=METRICS_TOKEN,
    )


def fuzzer_config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            # No example database: a run replays nothing an earlier (local) run found.
            "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            # Every check schemathesis has (status codes, response schemas and headers, content
            # types, negative data rejected, positive data accepted, auth, 405 and Allow, ...).
            "checks": {"enabled": True, "positive_data_acceptance": {"expected-statuses": POSITIVE_ACCEPTED}},
        }
    )


@dataclass
class Finding:
    operation: str
    check: str
    title: str
    message: str
    status: int | None
    body: str
    curl: str


@dataclass
class FuzzReport:
    cases: int = 0
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def summary(self) -> str:
        grouped: dict[tuple[str, str], list[Finding]] = defaultdict(list)
        for finding in self.findings:
            grouped[(finding.operation, finding.check)].append(finding)
        lines = [f"{len(self.findings)} failed checks in {self.cases} cases:"]
        for (operation, check), found in sorted(grouped.items()):
            first = found[0]
            lines.append(f"- {operation}: {check} x{len(found)}: {first.title}: {first.message[:300]}")
            lines.append(f"    answered {first.status}: {first.body[:300]}")
            lines.append(f"    {first.curl[:500]}")
        lines.extend(f"- error: {error[:500]}" for error in self.errors)
        return "\n".join(lines)


def _register_checks() -> None:
    @schemathesis.check
    def refused_only_for_its_meaning(ctx: Any, response: Any, case: Any) -> bool | None:
        """Schema-valid input may be refused for what it means (a wrong code: 400
        AUTH_CODE_INVALID), never as malformed, and as invalid (422 VALIDATION_FAILED) only on
        fields whose documented schema says what the server checks beyond it."""
        if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code not in (400, 422):
            return None
        try:
            body = json.loads(response.content)
        except ValueError:
            return None
        if not isinstance(body, dict):  # not the envelope (Engine.IO's sentences, say)
            return None
        if body.get("code") == "MALFORMED_REQUEST":
            raise Failure(operation=case.operation.label, message="schema-valid input answered MALFORMED_REQUEST")
        if body.get("code") != "VALIDATION_FAILED":
            return None
        checked = server_checked_fields(case.operation.definition.raw, case.operation.schema.raw_schema)
        unexplained = [
            p["field"]
            for p in body["data"]
            if not any(_covers(f, p["field"]) for f in checked)
            and not _whole_float(case.body, p["field"])
            and p["message"] not in GUARD_SENTENCES  # the app-wide rules of any JSON body
        ]
        if unexplained:
            raise Failure(
                operation=case.operation.label,
                message=f"schema-valid input refused as invalid on {unexplained}, which the schema "
                f"does not say the server checks beyond it (answer: {body['data']})",
            )
        return None


def _whole_float(body: Any, field: str) -> bool:
    """Whether the body holds a number written with a fraction at ``field`` (``5.0``). JSON Schema
    counts 5.0 as an integer; this API takes integers only as written as integers (the document's
    description says so), so refusing 5.0 for an integer field is no contract failure."""
    value = body
    for part in field.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False
    return isinstance(value, float) and value.is_integer()


def _covers(checked: str, reported: str) -> bool:
    return reported == checked or reported.startswith(f"{checked}.")


def _resolve(document: dict[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def server_checked_fields(operation: dict[str, Any], document: dict[str, Any]) -> set[str]:
    """Dotted names of the parameters and body fields that carry ``x-server-check``."""
    found: set[str] = set()
    for parameter in operation.get("parameters", []):
        if SERVER_CHECK_KEY in _resolve(document, parameter.get("schema", {})):
            found.add(parameter["name"])
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    stack: list[tuple[str, Any]] = [("", body)]
    seen: set[int] = set()
    while stack:
        prefix, schema = stack.pop()
        if isinstance(schema, dict) and SERVER_CHECK_KEY in schema and prefix:
            found.add(prefix)  # beside a $ref too: the rule is the field's, not its type's
        schema = _resolve(document, schema)
        if not isinstance(schema, dict) or id(schema) in seen:
            continue
        seen.add(id(schema))
        if SERVER_CHECK_KEY in schema and prefix:
            found.add(prefix)
        for key in ("anyOf", "oneOf", "allOf"):
            stack.extend((prefix, option) for option in schema.get(key, []))
        for name, child in schema.get("properties", {}).items():
            stack.append((f"{prefix}.{name}" if prefix else name, child))
    return found


_register_checks()


def attach_identities(schema: Any, identities: Identities) -> None:
    """Each case carries the token of the identity its operation needs; every answer tells the
    identities whether one of them needs repair."""

    @schema.auth(refresh_interval=None)
    class FuzzerIdentity:
        def get(self, case: Any, ctx: Any) -> Identity | None:
            return identities.for_operation(case.operation.definition.raw)

        def set(self, case: Any, data: Identity, ctx: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {identities.token(data)}"}

    @schema.hook("after_call")  # type: ignore[untyped-decorator]
    def observe(context: Any, case: Any, response: Any) -> None:
        identities.calls += 1
        identities.observe((case.headers or {}).get("Authorization"), response)


def refresh_tokens(identities: Identities) -> Callable[..., None]:
    """A ``before_call`` hook (schemathesis runs those only from its global registry)."""

    def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
        if case.operation.schema is not identities.schema:
            return
        live = identities.current_header((case.headers or {}).get("Authorization"))
        if live is not None:
            case.headers["Authorization"] = live

    return before_call


def log_in_identities(app: FastAPI, settings: Settings) -> Identities:
    client = asgi.get_client(app)  # type: ignore[arg-type]
    client.__enter__()  # starts the app's lifespan on schemathesis' event loop thread
    admin = Identity("admin", ADMIN_PHONE, ADMIN_PASSWORD, "admin")
    operator = Identity(
        "operator", settings.demo_operator_phone, settings.demo_operator_password.get_secret_value(), "operator"
    )
    scraper = Identity("prometheus", "", "", "", token=METRICS_TOKEN, suspect=False)
    identities = Identities(client, admin, operator, scraper)
    identities.token(admin)
    identities.token(operator)
    return identities


def run_fuzzer(app: FastAPI, identities: Identities) -> FuzzReport:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=fuzzer_config())
    attach_identities(schema, identities)
    identities.schema = schema
    hook = GLOBAL_HOOK_DISPATCHER.register_hook_with_name(refresh_tokens(identities), "before_call")
    report = FuzzReport()
    try:
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                _record(report, event.recorder)
            elif isinstance(event, events.NonFatalError):
                report.errors.append(f"{event.label}: {event.info.title}: {event.info}")
            elif isinstance(event, events.FatalError):
                report.errors.append(f"fatal: {event.exception!r}")
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(hook)
    return report


def _answer(response: Any) -> str:
    """``401 AUTH_REQUIRED``: the status, and the envelope's code when there is one."""
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        code = None
    return f"{response.status_code} {code}" if isinstance(code, str) else str(response.status_code)


def _record(report: FuzzReport, recorder: Any) -> None:
    report.cases += len(recorder.cases)
    for case_id, node in recorder.cases.items():
        interaction = recorder.interactions.get(case_id)
        if interaction is not None and interaction.response is not None:
            report.statuses[node.value.operation.label][_answer(interaction.response)] += 1
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            interaction = recorder.interactions.get(case_id)
            response = interaction.response if interaction is not None else None
            failure = check.failure_info.failure
            report.findings.append(
                Finding(
                    operation=recorder.label,
                    check=check.name,
                    title=failure.title,
                    message=failure.message,
                    status=response.status_code if response is not None else None,
                    body=response.content.decode("utf-8", "replace") if response is not None else "",
                    curl=check.failure_info.code_sample,
                )
            )
