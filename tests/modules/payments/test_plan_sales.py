"""Selling what operators configured, through the WeChat Pay peer: an empty production database is
given its plans by `wardrobe plans load` and sells at once; orders refuse plans that are not on
sale (inactive, outside their window, not on the channel); a placed order keeps the price and
quota it was placed at, whatever the plan says later."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import MARIADB_SERVER, Api, Backend, make_settings, start_api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.realtime import live
from tests.fixtures.tasks import free_port
from tests.modules.billing.plan_helpers import create, on_sale, pack, patch
from tests.peers.wechatpay_fixtures import ServedWeChatPayPeer, WeChatPaySettings
from wardrobe.core.db import create_engine, unit_of_work
from wardrobe.migrations import runner
from wardrobe.models import AuditLog, LedgerEntry, Order, Plan, User
from wardrobe.modules.billing.commands import load_plans, read_plans
from wardrobe.settings import Environment, Settings

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "plans.example.yaml"
FRESH_MARIADB_DB = "wardrobe_test_empty_shop"


async def _order(api: Api, user: Session, sku: str, channel: str = "wechat_native") -> Any:
    return await api.client.post("/api/v1/billing/orders", json={"sku": sku, "channel": channel}, headers=user.headers)


async def _quota(api: Api, user: Session) -> dict[str, Any]:
    answer: dict[str, Any] = data(await api.client.get("/api/v1/billing/quota", headers=user.headers))
    return answer


async def _count(api: Api, model: Any) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)


@dataclass
class Shop:
    api: Api


@pytest.fixture
async def shop(api_factory: Any, wechatpay_settings: WeChatPaySettings) -> AsyncIterator[Shop]:
    """The app on the test database, with WeChat Pay pointed at the peer and no plans at all."""
    port = free_port()
    api: Api = await api_factory(**wechatpay_settings(port))
    async with live(api.app, port):
        yield Shop(api)


async def test_orders_refuse_plans_that_are_not_on_sale(shop: Shop) -> None:
    api = shop.api
    admin = await login_as(api, "admin")
    user = await sms_login(api.client)
    await create(api, admin, pack("pack-off", is_active=False))
    await create(api, admin, pack("pack-soon", valid_from="2099-01-01T00:00:00Z"))
    await create(api, admin, pack("pack-over", valid_from="2001-01-01T00:00:00Z", valid_to="2002-01-01T00:00:00Z"))
    await create(api, admin, pack("pack-ali", channels=["alipay_qr", "alipay_wap"]))
    await create(api, admin, pack("pack-wx", channels=["wechat_native"]))

    for sku in ("pack-off", "pack-soon", "pack-over"):
        refused = await _order(api, user, sku)
        assert (refused.status_code, refused.json()["code"], refused.json()["data"]) == (
            409,
            "PLAN_NOT_ON_SALE",
            {"sku": sku},
        ), sku
    refused = await _order(api, user, "pack-ali")
    assert (refused.status_code, refused.json()["code"]) == (409, "PLAN_NOT_ON_SALE")
    assert refused.json()["data"] == {"sku": "pack-ali", "channels": ["alipay_qr", "alipay_wap"]}
    unknown = await _order(api, user, "pack-none")
    assert (unknown.status_code, unknown.json()["code"]) == (422, "VALIDATION_FAILED")
    assert unknown.json()["data"] == [{"field": "sku", "message": "套餐不存在"}]
    assert await _count(api, Order) == 0

    placed = data(await _order(api, user, "pack-wx"), 201)
    assert (placed["sku"], placed["amount_fen"], placed["status"]) == ("pack-wx", 990, "pending")
    # Turned off after the catalogue was cached: the order path reads the plan as it is now.
    assert "pack-wx" in await on_sale(api)
    await patch(api, admin, "pack-wx", is_active=False)
    refused = await _order(api, user, "pack-wx")
    assert (refused.status_code, refused.json()["code"]) == (409, "PLAN_NOT_ON_SALE")
    assert await _count(api, Order) == 1


async def test_a_placed_order_keeps_its_price_and_quota_when_the_plan_changes(
    shop: Shop, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    api = shop.api
    admin = await login_as(api, "admin")
    user = await sms_login(api.client)
    await create(api, admin, pack())  # ¥9.90 for 50
    before = (await _quota(api, user))["balance"]
    order = data(await _order(api, user, "pack-50"), 201)
    assert wechatpay_peer.order(order["order_no"]).total == 990

    await patch(api, admin, "pack-50", price_fen=1990, quota=80, name="80 次加油包", reason="new price")
    assert (await on_sale(api))["pack-50"]["price_fen"] == 1990

    await wechatpay_peer.pay(order["order_no"]).wait_delivered()
    paid = data(await api.client.get(f"/api/v1/billing/orders/{order['order_no']}", headers=user.headers))
    assert (paid["status"], paid["amount_fen"], paid["paid_fen"], paid["name"]) == (
        "fulfilled",
        990,
        990,
        "50 次体验包",
    )
    assert (await _quota(api, user))["balance"] == before + 50
    async with unit_of_work(api.infra.session_factory) as db:
        credited = list(
            await db.scalars(select(LedgerEntry.amount).where(LedgerEntry.ref == f"order:{order['order_no']}"))
        )
    assert credited == [50]
    # A new order is at the new price.
    again = data(await _order(api, user, "pack-50"), 201)
    assert again["amount_fen"] == 1990
    assert wechatpay_peer.order(again["order_no"]).total == 1990


# -- an empty production database -----------------------------------------------------------------


@asynccontextmanager
async def _fresh_database(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """A database created empty for this test and migrated, as `wardrobe migrate` does."""
    if backend.name == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    else:
        server = create_async_engine(MARIADB_SERVER + "/", isolation_level="AUTOCOMMIT")
        try:
            async with server.connect() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{FRESH_MARIADB_DB}`"))
                await conn.execute(
                    text(f"CREATE DATABASE `{FRESH_MARIADB_DB}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
                )
        finally:
            await server.dispose()
        url = f"{MARIADB_SERVER}/{FRESH_MARIADB_DB}?charset=utf8mb4"
    engine = create_engine(Settings(env=Environment.TEST), database_url=url)
    try:
        await runner.upgrade(engine)
    finally:
        await engine.dispose()
    try:
        yield url
    finally:
        if backend.name != "sqlite":
            server = create_async_engine(MARIADB_SERVER + "/", isolation_level="AUTOCOMMIT")
            try:
                async with server.connect() as conn:
                    await conn.execute(text(f"DROP DATABASE IF EXISTS `{FRESH_MARIADB_DB}`"))
            finally:
                await server.dispose()


@pytest.fixture
async def empty_shop(backend: Backend, tmp_path: Path, wechatpay_settings: WeChatPaySettings) -> AsyncIterator[Api]:
    """The app on a freshly migrated database with nothing in it (no demo data), as production
    starts: migrations apart, no auto-migrate and no seed; WeChat Pay at the peer."""
    async with _fresh_database(backend, tmp_path) as url:
        port = free_port()
        settings = make_settings(
            Backend(backend.name, url, backend.redis_url),
            seed_demo_data=False,
            auto_migrate=False,
            **wechatpay_settings(port),
        )
        app, manager, client = await start_api(settings)
        try:
            async with live(app, port):
                yield Api(app=app, client=client, settings=settings)
        finally:
            await client.aclose()
            await manager.__aexit__(None, None, None)


async def test_an_empty_database_sells_once_the_plans_are_loaded(
    empty_shop: Api, wechatpay_peer: ServedWeChatPayPeer
) -> None:
    api = empty_shop
    assert await _count(api, Plan) == 0
    assert await _count(api, User) == 0
    assert await on_sale(api) == {}

    entries = read_plans(EXAMPLE)
    dry = await load_plans(api.infra.session_factory, api.infra.cache, entries, source=EXAMPLE.name, dry_run=True)
    assert {r.action for r in dry} == {"created"}
    assert await _count(api, Plan) == 0
    loaded = await load_plans(api.infra.session_factory, api.infra.cache, entries, source=EXAMPLE.name)
    assert [r.sku for r in loaded] == [e.sku for e in entries]
    sale = await on_sale(api)
    assert {"vip-month", "vip-quarter", "vip-year", "pack-50", "pack-200", "pack-1000"} <= set(sale)
    assert (sale["vip-month"]["price_fen"], sale["vip-month"]["tier"]) == (2990, "vip")
    async with unit_of_work(api.infra.session_factory) as db:
        trail = (await db.execute(select(AuditLog.action, AuditLog.actor_id, AuditLog.reason))).all()
    assert {tuple(row) for row in trail} == {("plan.create", None, "loaded from plans.example.yaml")}
    assert len(trail) == len(entries)

    user = await sms_login(api.client)
    before = await _quota(api, user)
    assert before["membership"] is None
    order = data(await _order(api, user, "vip-month"), 201)
    assert wechatpay_peer.order(order["order_no"]).total == 2990
    delivery = wechatpay_peer.pay(order["order_no"])
    await delivery.wait_delivered()
    assert delivery.statuses == [204]

    after = await _quota(api, user)
    assert after["balance"] == before["balance"] + 300
    assert after["membership"]["plan"] == "vip-month"
    paid = data(await api.client.get(f"/api/v1/billing/orders/{order['order_no']}", headers=user.headers))
    assert (paid["status"], paid["paid_fen"]) == ("fulfilled", 2990)
