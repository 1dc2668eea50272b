"""The sandbox channel: development's way to buy, through the real notification path — the checkout
pays once however often it is pressed, its notifications are verified like a platform's (a forged,
stale or unsigned one changes nothing), and production will not start with it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, sms_login
from tests.fixtures.settings import production_settings
from tests.fixtures.tasks import balance
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, PaymentNotification
from wardrobe.modules.payments.sandbox import SIGNATURE_HEADERS, SandboxGateway, sandbox_key
from wardrobe.seed import seed_plans
from wardrobe.settings import Environment, Settings

NOTIFY = "/api/v1/payments/sandbox/notify"
CHECKOUT = "/api/v1/payments/sandbox/checkout"


@pytest.fixture
async def sandbox_api(api_factory: Any) -> Api:
    api: Api = await api_factory(payment_sandbox=True)
    async with unit_of_work(api.infra.session_factory) as db:
        await seed_plans(db)
    return api


async def _order(api: Api, user: Session, sku: str = "pack-100") -> dict[str, Any]:
    resp = await api.client.post(
        "/api/v1/billing/orders", json={"sku": sku, "channel": "sandbox"}, headers=user.headers
    )
    return dict(data(resp, 201))


def _checkout_of(order: dict[str, Any]) -> dict[str, Any]:
    """What the checkout page posts: the parameters of its URL."""
    url = urlsplit(order["pay_params"]["checkout_url"])
    assert url.path == "/app/sandbox-checkout.html"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    return {"order_no": query["order_no"], "amount_fen": int(query["amount_fen"]), "token": query["token"]}


async def _ledger_rows(api: Api, ref: str) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        return int(await db.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.ref == ref)) or 0)


def _gateway(api: Api) -> SandboxGateway:
    gateway = api.infra.payments.gateways["sandbox"]
    assert isinstance(gateway, SandboxGateway)
    return gateway


async def test_a_purchase_completes_once_however_often_the_checkout_is_pressed(sandbox_api: Api) -> None:
    api = sandbox_api
    assert "sandbox" in data(await api.client.get("/api/v1/billing/channels"))
    user = await sms_login(api.client)
    uid = user.user["id"]
    before = await balance(api, uid)
    order = await _order(api, user)
    assert (order["status"], order["channel"]) == ("pending", "sandbox")
    pay = _checkout_of(order)
    assert pay["amount_fen"] == order["amount_fen"]

    answers = await asyncio.gather(*(api.client.post(CHECKOUT, json=pay) for _ in range(8)))
    outcomes = sorted(data(a)["outcome"] for a in answers)
    assert outcomes.count("fulfilled") == 1, outcomes
    assert set(outcomes) <= {"fulfilled", "already_fulfilled"}
    after = await balance(api, uid)
    assert after[0] == before[0] + 100
    assert after[0] == after[2]
    assert await _ledger_rows(api, f"order:{order['order_no']}") == 1
    stored = data(await api.client.get(f"/api/v1/billing/orders/{order['order_no']}", headers=user.headers))
    assert (stored["status"], stored["paid_fen"]) == ("fulfilled", order["amount_fen"])
    async with unit_of_work(api.infra.session_factory) as db:
        inbox = await db.scalar(
            select(func.count()).select_from(PaymentNotification).where(PaymentNotification.provider == "sandbox")
        )
    assert inbox == 8  # every notification went through the inbox; only one moved money


async def test_a_checkout_for_another_amount_or_order_is_refused(sandbox_api: Api) -> None:
    api = sandbox_api
    user = await sms_login(api.client)
    order = await _order(api, user)
    pay = _checkout_of(order)
    for forged in (
        {**pay, "amount_fen": 1},  # the token signs the amount
        {**pay, "token": "0" * 40},
        {**pay, "order_no": pay["order_no"][:-1] + ("0" if pay["order_no"][-1] != "0" else "1")},
    ):
        resp = await api.client.post(CHECKOUT, json=forged)
        assert (resp.status_code, resp.json()["code"]) == (404, "NOT_FOUND"), forged
    resp = await api.client.post(CHECKOUT, json={**pay, "amount_fen": "100"})  # strict types
    assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED")
    stored = data(await api.client.get(f"/api/v1/billing/orders/{order['order_no']}", headers=user.headers))
    assert stored["status"] == "pending"


async def test_notifications_are_verified_like_a_platforms(sandbox_api: Api) -> None:
    api = sandbox_api
    user = await sms_login(api.client)
    uid = user.user["id"]
    order = await _order(api, user)
    gateway = _gateway(api)
    headers, body = gateway.paid_notification(order["order_no"], order["amount_fen"])
    before = await balance(api, uid)

    unsigned = await api.client.post(NOTIFY, content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 400
    tampered = body.replace(b'"amount_fen":', b'"amount_fen":1')
    assert (await api.client.post(NOTIFY, content=tampered, headers=headers)).status_code == 401
    other_key = SandboxGateway(sandbox_key("another deployment's secret, 32+ characters"))
    forged_headers, forged = other_key.paid_notification(order["order_no"], order["amount_fen"])
    assert (await api.client.post(NOTIFY, content=forged, headers=forged_headers)).status_code == 401
    stale_headers = gateway.sign(headers["webhook-id"], body, time.time() - 3600)
    assert (await api.client.post(NOTIFY, content=body, headers=stale_headers)).status_code == 401
    # Well signed, but under another id than the event's: a replay dressed as a new event.
    renamed = gateway.sign("sbx_evt_someone_else", body, time.time())
    assert (await api.client.post(NOTIFY, content=body, headers=renamed)).status_code == 401
    assert await balance(api, uid) == before

    # The genuine one, delivered twice (a platform retries): credited once.
    assert (await api.client.post(NOTIFY, content=body, headers=headers)).status_code == 204
    assert (await api.client.post(NOTIFY, content=body, headers=headers)).status_code == 204
    assert (await balance(api, uid))[0] == before[0] + 100
    # A wrong amount, well signed, for another order: refused, nothing moves.
    second = await _order(api, user)
    wrong_headers, wrong = gateway.paid_notification(second["order_no"], second["amount_fen"] - 1)
    assert (await api.client.post(NOTIFY, content=wrong, headers=wrong_headers)).status_code == 400
    assert json.loads(wrong)["order_no"] == second["order_no"]
    assert (await balance(api, uid))[0] == before[0] + 100


async def test_the_sandbox_is_off_unless_in_development(api: Api) -> None:
    # The suite's own settings are "test": no sandbox unless asked for.
    assert "sandbox" not in data(await api.client.get("/api/v1/billing/channels"))
    user = await sms_login(api.client)
    resp = await api.client.post(
        "/api/v1/billing/orders", json={"sku": "pack-100", "channel": "sandbox"}, headers=user.headers
    )
    assert resp.json()["code"] in ("PAYMENT_CHANNEL_UNAVAILABLE", "PLAN_NOT_ON_SALE")
    assert (
        await api.client.post(NOTIFY, content=b"{}", headers=dict.fromkeys(SIGNATURE_HEADERS, "1"))
    ).status_code == 404

    assert Settings(_env_file=None, env=Environment.DEVELOPMENT).sandbox_payments_enabled
    assert not Settings(_env_file=None, env=Environment.DEVELOPMENT, payment_sandbox=False).sandbox_payments_enabled
    assert not Settings(_env_file=None, env=Environment.TEST).sandbox_payments_enabled
    production = production_settings()
    assert not Settings(_env_file=None, env=Environment.PRODUCTION, **production).sandbox_payments_enabled
    with pytest.raises(ValidationError, match="WARDROBE_PAYMENT_SANDBOX must be off"):
        Settings(_env_file=None, env=Environment.PRODUCTION, payment_sandbox=True, **production)
