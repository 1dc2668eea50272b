"""`wardrobe plans load FILE.yaml [--dry-run]` and `wardrobe plans list` on a fresh SQLite file:
plans created or updated by sku, all or nothing, audited with no actor and the file's name; a load
reaches the running API processes at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import Api
from tests.modules.billing.plan_helpers import on_sale
from wardrobe.cli import app
from wardrobe.core.db import create_engine, create_session_factory
from wardrobe.models import AuditLog, Plan
from wardrobe.modules.billing.commands import load_plans, read_plans, run_with_database
from wardrobe.modules.billing.plans import plan_body
from wardrobe.settings import get_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "plans.example.yaml"


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    monkeypatch.setenv("WARDROBE_DATABASE_URL", url)
    monkeypatch.setenv("WARDROBE_REDIS_URL", "")
    monkeypatch.setenv("WARDROBE_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    assert CliRunner().invoke(app, ["migrate"]).exit_code == 0
    yield url
    get_settings.cache_clear()


Trail = list[tuple[str, str, int | None, str | None, Any]]


def _read(url: str) -> tuple[dict[str, dict[str, Any]], Trail]:
    """The plans (as admins see them) and the audit trail."""

    async def read() -> tuple[dict[str, dict[str, Any]], Trail]:
        engine = create_engine(get_settings(), database_url=url)
        try:
            async with create_session_factory(engine)() as session:
                plans = {p.sku: plan_body(p) for p in await session.scalars(select(Plan))}
                trail = [
                    (a.action, a.target_id, a.actor_id, a.reason, a.after)
                    for a in await session.scalars(select(AuditLog).order_by(AuditLog.id))
                ]
                return plans, trail
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _load(*args: str) -> Any:
    return CliRunner().invoke(app, ["plans", "load", *args])


def test_the_example_catalogue_loads_and_a_second_load_changes_only_what_changed(fresh_db: str, tmp_path: Path) -> None:
    dry = _load(str(EXAMPLE), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "vip-month: would be created" in dry.output
    assert "dry run, nothing written: 7 created, 0 updated, 0 unchanged" in dry.output
    assert _read(fresh_db) == ({}, [])

    first = _load(str(EXAMPLE))
    assert first.exit_code == 0, first.output
    assert "7 created, 0 updated, 0 unchanged" in first.output
    plans, trail = _read(fresh_db)
    assert set(plans) == {
        "vip-month",
        "vip-quarter",
        "vip-year",
        "pack-50",
        "pack-200",
        "pack-1000",
        "pack-spring-2027",
    }
    month = plans["vip-month"]
    assert (month["kind"], month["name"], month["price_fen"], month["quota"], month["period_days"], month["tier"]) == (
        "membership",
        "月卡会员",
        2990,
        300,
        30,
        "vip",
    )
    spring = plans["pack-spring-2027"]
    assert spring["channels"] == ["wechat_jsapi", "wechat_native"]
    assert spring["valid_from"].isoformat() == "2027-01-19T16:00:00+00:00"
    assert {(t[0], t[2], t[3]) for t in trail} == {("plan.create", None, "loaded from plans.example.yaml")}

    listed = CliRunner().invoke(app, ["plans", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].startswith("vip-month\tmembership\t月卡会员\t¥29.90\tquota 300\t30d\ttier vip")
    assert "wechat_jsapi,wechat_native\t2027-01-19..2027-02-19\tactive" in lines[-1]

    changed = tmp_path / "next.yaml"
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "price_fen: 2990\n    quota: 300", "price_fen: 1990\n    quota: 300"
    )
    changed.write_text(text.replace("sort_order: 140", "sort_order: 140\n    is_active: false"), encoding="utf-8")
    second = _load(str(changed))
    assert second.exit_code == 0, second.output
    assert "vip-month: updated (price_fen)" in second.output
    assert "pack-spring-2027: updated (is_active)" in second.output
    assert "0 created, 2 updated, 5 unchanged" in second.output
    plans, trail = _read(fresh_db)
    assert (plans["vip-month"]["price_fen"], plans["pack-spring-2027"]["is_active"]) == (1990, False)
    assert trail[-2:] == [
        ("plan.update", "vip-month", None, "loaded from next.yaml", {"price_fen": 1990}),
        ("plan.update", "pack-spring-2027", None, "loaded from next.yaml", {"is_active": False}),
    ]


def test_a_file_with_any_bad_plan_writes_nothing(fresh_db: str, tmp_path: Path) -> None:
    assert _load(str(EXAMPLE)).exit_code == 0
    before = _read(fresh_db)
    bad = tmp_path / "bad.yaml"
    cases = {
        # a good change first, then a plan the rules refuse: neither is written
        "plans:\n  - {sku: pack-50, kind: quota_pack, name: 五十次, price_fen: 1, quota: 50}\n"
        "  - {sku: vip-x, kind: membership, name: X, price_fen: 100, quota: 1, period_days: 7, features: [ghost]}\n": (
            "vip-x features: no such feature: ghost"
        ),
        "plans:\n  - {sku: pack-9, kind: quota_pack, name: 九次, price_fen: 0, quota: 9}\n": (
            "plans[0] (pack-9) price_fen"
        ),
        "plans:\n  - {sku: vip-y, kind: membership, name: Y, price_fen: 100, quota: 1}\n": "vip-y period_days",
        "plans:\n  - {sku: pack-9, kind: quota_pack, name: 九次, price_fen: 9, quota: 9, valid_to: 2027-01-01}\n": (
            "valid_to: must be an ISO 8601 time with a zone"
        ),
        "plans:\n  - {sku: pack-9, kind: quota_pack, name: a, price_fen: 9, quota: 9}\n"
        "  - {sku: pack-9, kind: quota_pack, name: b, price_fen: 9, quota: 9}\n": "sku pack-9 appears twice",
        "plans:\n  - {sku: pack-9, kind: quota_pack, name: a, price_fen: 9, quota: 9, colour: red}\n": "colour",
        "- {sku: pack-9}\n": "one key, `plans`",
        "plans: [\n": "not valid YAML",
    }
    for content, problem in cases.items():
        bad.write_text(content, encoding="utf-8")
        result = _load(str(bad))
        assert result.exit_code == 1, (content, result.output)
        assert problem in result.output, (content, result.output)
        assert _read(fresh_db) == before, content


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_load_reaches_every_running_process_at_once(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDROBE_DATABASE_URL", api.settings.database_url)
    monkeypatch.setenv("WARDROBE_REDIS_URL", api.settings.redis_url)
    monkeypatch.setenv("WARDROBE_REDIS_KEY_PREFIX", api.settings.redis_key_prefix)
    get_settings.cache_clear()
    try:
        assert await on_sale(api) == {}  # the running process caches the empty catalogue
        entries = read_plans(EXAMPLE)
        await run_with_database(lambda sessions, cache: load_plans(sessions, cache, entries, source=EXAMPLE.name))
    finally:
        get_settings.cache_clear()
    await api.infra.cache.wait_received(1)
    assert {"vip-month", "pack-50"} <= set(await on_sale(api))
