"""The Socket.IO contract (/asyncapi.json, docs/realtime.md) describes what the server really
sends: real events, acknowledgements and refusals, caught by a real client, validate against the
payload schemas of the served document."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import socketio
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.realtime import Listener, live
from tests.fixtures.tasks import give_quota, make_feature, step, wait_until
from wardrobe.core.db import unit_of_work
from wardrobe.models import Order
from wardrobe.models.base import utcnow

ASYNCAPI = "urn:wardrobe:asyncapi"


class Contract:
    """Validators for the components of the served AsyncAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(ASYNCAPI, resource)
        self.document = document

    def check(self, component: str, value: Any) -> None:
        schema = {"$ref": f"{ASYNCAPI}#/components/schemas/{component}"}
        errors = [e.message for e in Draft202012Validator(schema, registry=self.registry).iter_errors(value)]
        assert errors == [], (component, value, errors)


class RawListener(Listener):
    """Keeps ``session.ended`` as it came, not only its code."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_ended: list[Any] = []
        self.client.on("session.ended", self._on_raw_ended)

    async def _on_raw_ended(self, body: Any) -> None:
        self.raw_ended.append(body)
        await self._on_ended(body)


async def _contract(api: Api) -> Contract:
    resp = await api.client.get("/asyncapi.json")
    assert resp.status_code == 200
    document: dict[str, Any] = resp.json()
    assert document["asyncapi"] == "3.0.0"
    return Contract(document)


async def test_real_events_and_acks_match_the_documented_payloads(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=True)
    contract = await _contract(api)
    admin = await login_as(api, "admin")
    await make_feature(
        api, admin, "echo", [step("first", provider="instant", action="passthrough")], {"r": "$steps.first.key"}
    )
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    async with live(api.app) as url:
        listener = RawListener()
        await listener.connect(url, user.access)
        try:
            created = await api.client.post(
                "/api/v1/tasks", json={"feature": "echo", "inputs": {"key": "k"}}, headers=user.headers
            )
            task_id = str(data(created, 202)["id"])
            ack = await listener.subscribe(task_id, "no-such-task")
            contract.check("SubscribeAck", ack)
            assert (ack["ok"], ack["refused"]) == (True, ["no-such-task"])
            await listener.wait_terminal(task_id)

            async def quota_told() -> bool:
                return bool(listener.quota)

            await wait_until(quota_told)
            for event in listener.tasks:
                contract.check("TaskUpdated", event)
            for event in listener.quota:
                contract.check("QuotaUpdated", event)
            assert {e["payload"]["status"] for e in listener.tasks} >= {"succeeded"}

            refused = await listener.client.call("subscribe", {"task_ids": []}, timeout=10)
            contract.check("SubscribeAck", refused)
            assert (refused["ok"], refused["code"]) == (False, "VALIDATION_FAILED")
            for body in ({"task_ids": [task_id]}, {"task_ids": "x"}):
                contract.check("UnsubscribeAck", await listener.client.call("unsubscribe", body, timeout=10))

            await _order_changes(api, user.user["id"])

            async def order_told() -> bool:
                return bool(listener.orders)

            await wait_until(order_told)
            for event in listener.orders:
                contract.check("OrderUpdated", event)

            data(await api.client.post("/api/v1/auth/logout", headers=user.headers))
            assert await listener.wait_dropped() == ["AUTH_SESSION_REVOKED"]
            [ended] = listener.raw_ended
            contract.check("SessionEnded", ended)
        finally:
            await listener.close()


async def _order_changes(api: Api, user_id: int) -> None:
    """An order of the user's changes; the product's own push announces it."""
    async with unit_of_work(api.infra.session_factory) as session:
        order = Order(
            order_no="CT0000000000000001",
            user_id=user_id,
            sku="pack_10",
            kind="quota_pack",
            name="10 quota",
            quota=10,
            channel="wechat_native",
            amount_fen=100,
            pay_params={"code_url": "weixin://wxpay/bizpayurl?pr=contract"},
            expires_at=utcnow() + timedelta(minutes=30),
        )
        session.add(order)
        await session.flush()
        order_id = order.id
    events = api.infra.runtime.events
    assert events is not None
    await asyncio.wait_for(events.deliver(("order", order_id)), 10)


async def test_connect_refusals_match_the_documented_refusal(api_factory: Any) -> None:
    api: Api = await api_factory(socket_connect_limit_per_ip="", sockets_per_user=1)
    contract = await _contract(api)
    user = await sms_login(api.client)
    async with live(api.app) as url:
        holder = Listener()
        await holder.connect(url, user.access)
        try:
            for token, expected in (
                ("", "AUTH_REQUIRED"),
                ("not-a-jwt", "AUTH_TOKEN_INVALID"),
                (user.access, "CONNECTION_LIMIT_REACHED"),
            ):
                refused = Listener()
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await refused.connect(url, token)
                assert refused.refused_with() == expected
                contract.check("ConnectRefused", refused.refusals[-1])
            assert refused.refusals[-1]["data"] == {"limit": 1}
        finally:
            await holder.close()


async def test_every_reference_in_the_document_resolves(api: Api) -> None:
    contract = await _contract(api)
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                found.append(node["$ref"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(contract.document)
    assert len(found) > 20
    resolver = contract.registry.resolver(base_uri=ASYNCAPI)
    for ref in found:
        resolver.lookup(f"{ASYNCAPI}{ref}")
    names = {m["name"] for m in contract.document["components"]["messages"].values()}
    assert names == {
        "task.updated",
        "quota.updated",
        "order.updated",
        "session.ended",
        "subscribe",
        "unsubscribe",
        "provider.health",
        "subscribe_providers",
        "unsubscribe_providers",
    }


async def test_the_provider_feed_matches_the_documented_payloads(api_factory: Any) -> None:
    api: Api = await api_factory(socket_provider_push_seconds=0.1)
    contract = await _contract(api)
    operator, user = await login_as(api, "operator"), await sms_login(api.client)
    async with live(api.app) as url:
        staff, plain = Listener(), Listener()
        await staff.connect(url, operator.access)
        await plain.connect(url, user.access)
        try:
            contract.check("SubscribeProvidersAck", await plain.client.call("subscribe_providers", {}, timeout=10))
            ack = await staff.client.call("subscribe_providers", timeout=10)
            contract.check("SubscribeProvidersAck", ack)
            assert ack["ok"] is True
            switch = {"enabled": False, "reason": "contract"}
            data(await api.client.post("/api/v1/admin/providers/instant/switch", json=switch, headers=operator.headers))

            async def told() -> bool:
                return bool(staff.providers)

            await wait_until(told)
            for event in staff.providers:
                contract.check("ProviderHealth", event)
            contract.check("UnsubscribeProvidersAck", await staff.client.call("unsubscribe_providers", timeout=10))
        finally:
            await staff.close()
            await plain.close()
