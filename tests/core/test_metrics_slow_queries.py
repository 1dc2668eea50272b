"""Slow statements are logged with a fingerprint (literals and parameters as ``?``, never their
values) and counted by operation; with the threshold at 0 nothing is watched."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from tests.conftest import Api
from wardrobe.core.db import create_engine
from wardrobe.core.slow_queries import fingerprint, operation_of


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(root.handlers[0].formatter if root.handlers else None)
    root.addHandler(handler)
    yield buffer
    root.removeHandler(handler)


def slow(operation: str) -> float:
    return REGISTRY.get_sample_value("wardrobe_db_slow_queries_total", {"operation": operation}) or 0.0


def slow_query_lines(buffer: io.StringIO) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "slow_query"]


async def test_a_slow_statement_is_logged_by_fingerprint_and_counted(api: Api, captured_logs: io.StringIO) -> None:
    engine = create_engine(api.settings.model_copy(update={"slow_query_ms": 0.000001}))
    before = slow("select")
    try:
        async with engine.connect() as conn:
            statement = text("SELECT 'literal-wardrobe-7731' AS a, 42 AS b, :param AS c")
            assert (await conn.execute(statement, {"param": "param-wardrobe-4455"})).one()[0] == "literal-wardrobe-7731"
    finally:
        await engine.dispose()
    assert slow("select") - before >= 1
    logged = captured_logs.getvalue()
    assert "literal-wardrobe-7731" not in logged
    assert "param-wardrobe-4455" not in logged
    [line] = [line for line in slow_query_lines(captured_logs) if "AS a" in str(line["fingerprint"])]
    assert line["fingerprint"] == "SELECT ? AS a, ? AS b, ? AS c"
    assert line["fingerprint_id"] == fingerprint("SELECT 'other' AS a, 7 AS b, %s AS c")[1]
    assert line["operation"] == "select"
    assert line["level"] == "warning"
    assert isinstance(line["ms"], float)


async def test_with_the_threshold_at_zero_nothing_is_watched(api: Api, captured_logs: io.StringIO) -> None:
    engine = create_engine(api.settings.model_copy(update={"slow_query_ms": 0}))
    before = slow("select")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert slow("select") == before
    assert slow_query_lines(captured_logs) == []


def test_one_query_shape_is_one_fingerprint_whatever_its_values() -> None:
    a = fingerprint("SELECT * FROM t WHERE id IN (1, 2, 3) AND name = 'x''y' AND n > -2.5")
    b = fingerprint("select * from t where id in (?, ?)   and name = ? and n > ?".replace("select", "SELECT"))
    assert a[0] == "SELECT * FROM t WHERE id IN (?+) AND name = ? AND n > ?"
    assert a[1] != b[1]  # case is kept: SQLAlchemy writes one statement one way
    assert fingerprint("UPDATE t SET v = %(v)s WHERE id = %(id_1)s")[0] == "UPDATE t SET v = ? WHERE id = ?"
    assert fingerprint("DELETE FROM t WHERE id = $1 AND c = :c")[0] == "DELETE FROM t WHERE id = ? AND c = ?"
    assert fingerprint("SELECT t1.col2 FROM t1")[0] == "SELECT t1.col2 FROM t1"  # names keep their digits
    assert [
        operation_of(s) for s in ("select 1", " INSERT INTO t", "WITH x AS (SELECT 1) DELETE FROM t", "PRAGMA x")
    ] == [
        "select",
        "insert",
        "delete",
        "other",
    ]
