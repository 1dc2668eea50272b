"""The OpenAPI document tells the truth: schemathesis finds no server error and no contract
failure on any operation, with positive and negative data (see tests/contract/fuzz.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from schemathesis.python import asgi

from tests.contract.fuzz import ADMIN_PASSWORD, ADMIN_PHONE, FuzzReport, fuzz_settings, log_in_identities, run_fuzzer
from tests.contract.identities import Identities
from tests.core.openapi_walk import operations
from wardrobe.app import create_app
from wardrobe.core.db import create_engine, create_session_factory, unit_of_work
from wardrobe.migrations import runner
from wardrobe.modules.admin import service as admin_service
from wardrobe.modules.users.service import SignupPolicy


@pytest.fixture
async def fuzzed_app(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, Identities]]:
    settings = fuzz_settings(tmp_path / "wardrobe.db")
    engine = create_engine(settings)
    try:
        await runner.upgrade(engine)
        async with unit_of_work(create_session_factory(engine)) as session:
            await admin_service.create_user(
                session,
                actor_id=None,
                phone=ADMIN_PHONE,
                password=ADMIN_PASSWORD,
                role="admin",
                policy=SignupPolicy.of(settings),
            )
    finally:
        await engine.dispose()
    app = create_app(settings)
    identities = log_in_identities(app, settings)
    try:
        yield app, identities
    finally:
        asgi.shutdown_lifespans()


def _reached(report: FuzzReport, label: str) -> bool:
    """Whether some request of the operation got past routing and authentication."""
    return any(not answer.startswith(("401", "405")) for answer in report.statuses.get(label, {}))


def test_every_operation_keeps_its_contract(fuzzed_app: tuple[FastAPI, Identities]) -> None:
    app, identities = fuzzed_app
    report = run_fuzzer(app, identities)
    print(report.summary())
    for label, answers in sorted(report.statuses.items()):
        print(label, dict(answers))
    assert report.findings == [], report.summary()
    assert report.errors == [], report.summary()
    # Every operation of the document was fuzzed, and got past authentication: the identities
    # reach what they should, and the fuzz tested the operations rather than the login.
    labels = {f"{op.method} {op.template}" for op in operations(app.openapi())}
    assert labels <= set(report.statuses), labels - set(report.statuses)
    assert [label for label in sorted(labels) if not _reached(report, label)] == []
    # The rate limits and SMS cooldowns opened for the run (fuzz_settings) did not wall any
    # operation off with 429s.
    walled = {
        label: answers
        for label, answers in report.statuses.items()
        if sum(n for a, n in answers.items() if a.startswith("429")) * 3 > sum(answers.values())
    }
    assert walled == {}
