"""The OpenAPI document tells the truth: schemathesis finds no server error and no contract
failure on any operation, with positive and negative data (see tests/contract/fuzz.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from schemathesis.python import asgi

from tests.contract.fuzz import ADMIN_PASSWORD, ADMIN_PHONE, fuzz_settings, log_in_identities, run_fuzzer
from tests.contract.identities import Identities
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


def test_every_operation_keeps_its_contract(fuzzed_app: tuple[FastAPI, Identities]) -> None:
    app, identities = fuzzed_app
    report = run_fuzzer(app, identities)
    print(report.summary())
    print("calls observed", identities.calls, "repairs", identities.repairs)
    for label, statuses in sorted(report.statuses.items()):
        print(label, dict(statuses))
    assert report.findings == [], report.summary()
    assert report.errors == [], report.summary()
