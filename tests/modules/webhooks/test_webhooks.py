"""Webhooks, against a local receiver that verifies every delivery with the standardwebhooks
library and the secret shown at registration: every event arrives at least once, retries and
replays carry the same id, a forged or stale signature is what the receiver refuses, internal
addresses are out of reach, and an endpoint failing for the whole retry window is disabled."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.realtime import live
from tests.fixtures.tasks import free_port, give_quota, wait_until
from tests.modules.account.erasure_flows import (
    create,
    finished_thumbnail,
    held_feature,
    thumbnail_feature,
    upload_photo,
)
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog, WebhookEndpoint
from wardrobe.models.base import utcnow
from wardrobe.seed import seed_plans

HOOKS = "/api/v1/webhooks"


@dataclass
class Receiver:
    """A customer's endpoint: records what it got and answers with the next planned status."""

    secret: str = ""
    got: list[dict[str, Any]] = field(default_factory=list)
    plan: list[int] = field(default_factory=list)  # statuses to answer, then 204

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            event = Webhook(self.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            event, verified = json.loads(body), False
        self.got.append({"id": headers.get("webhook-id"), "type": event.get("type"), "event": event, "ok": verified})
        status = self.plan.pop(0) if self.plan else 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [g for g in self.got if g["type"] == kind]


@dataclass
class Rig:
    api: Api
    receiver: Receiver
    url: str
    user: Session

    async def register(self, events: list[str], url: str | None = None, status: int = 201) -> Any:
        body = {"url": url or f"{self.url}/hooks", "events": events}
        created = data(await self.api.client.post(HOOKS, json=body, headers=self.user.headers), status)
        if status == 201:
            self.receiver.secret = created["secret"]
        return created

    async def deliveries(self, endpoint_id: int) -> list[dict[str, Any]]:
        return list(data(await self.api.client.get(f"{HOOKS}/{endpoint_id}/deliveries", headers=self.user.headers)))


@pytest.fixture
async def rig(api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    port = free_port()
    api: Api = await api_factory(
        extra_providers=["tests.providers.fault:build"],
        worker_in_process=True,
        user_max_running_tasks=1,
        payment_sandbox=True,
        webhook_allow_private=[f"127.0.0.1:{port}"],
        webhook_retry_seconds=[0.05],
        webhook_quota_low=0,
    )
    admin = await login_as(api, "admin")
    await thumbnail_feature(api, admin)
    await held_feature(api, admin)
    async with unit_of_work(api.infra.session_factory) as db:
        await seed_plans(db)
    receiver = Receiver()
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 5)
    async with live(receiver, port) as url:
        yield Rig(api, receiver, url, user)


async def _until(check: Any) -> None:
    async def ready() -> bool:
        return bool(check())

    await wait_until(ready, within=30)


async def test_task_and_order_events_arrive_signed_once_each(rig: Rig, fault_vendor: Any) -> None:
    hook = await rig.register(["task.succeeded", "task.canceled", "order.paid"])
    assert hook["secret"].startswith("whsec_")
    assert "secret" not in data(await rig.api.client.get(HOOKS, headers=rig.user.headers))[0]
    done = await finished_thumbnail(rig.api, rig.user, await upload_photo(rig.api, rig.user))
    await _until(lambda: rig.receiver.of("task.succeeded"))
    [got] = rig.receiver.of("task.succeeded")
    assert got["ok"], got
    assert got["id"] == f"task.succeeded.{done['id']}"
    assert got["event"]["data"]["id"] == done["id"]
    assert [o["key"] for o in got["event"]["data"]["outputs"]] == [o["key"] for o in done["outputs"]]

    # A queued task canceled (the user runs one at a time: a held task keeps it queued).
    fault_vendor.scenario("fault:w-hold", hold=True)
    await create(rig.api, rig.user, "hold", {"key": "w-hold"})
    queued = await create(rig.api, rig.user, "thumb", {"image": await upload_photo(rig.api, rig.user, 1)})
    resp = await rig.api.client.post(f"/api/v1/tasks/{queued['id']}/cancel", headers=rig.user.headers)
    assert resp.status_code == 200
    await _until(lambda: rig.receiver.of("task.canceled"))
    assert rig.receiver.of("task.canceled")[0]["id"] == f"task.canceled.{queued['id']}"
    fault_vendor.release("fault:w-hold")

    order = data(
        await rig.api.client.post(
            "/api/v1/billing/orders", json={"sku": "pack-100", "channel": "sandbox"}, headers=rig.user.headers
        ),
        201,
    )
    query = dict(p.split("=", 1) for p in order["pay_params"]["checkout_url"].split("?", 1)[1].split("&"))
    pay = {"order_no": query["order_no"], "amount_fen": int(query["amount_fen"]), "token": query["token"]}
    for _ in range(2):  # pressed twice: one payment, one event
        assert (await rig.api.client.post("/api/v1/payments/sandbox/checkout", json=pay)).status_code == 200
    await _until(lambda: rig.receiver.of("order.paid"))
    assert [g["event"]["data"]["order_no"] for g in rig.receiver.of("order.paid")] == [order["order_no"]]
    assert all(g["ok"] for g in rig.receiver.got)
    # Nothing it did not subscribe to, and each event once.
    assert sorted({g["type"] for g in rig.receiver.got}) == ["order.paid", "task.canceled", "task.succeeded"]
    assert len({g["id"] for g in rig.receiver.got}) == len(rig.receiver.got)

    async def all_recorded() -> bool:  # each answer is written down just after it was given
        return {d["status"] for d in await rig.deliveries(hook["id"])} == {"succeeded"}

    await wait_until(all_recorded, within=30)
    assert len(await rig.deliveries(hook["id"])) == len(rig.receiver.got)  # each delivered once


async def test_a_failed_delivery_is_retried_and_replayed_under_the_same_id(rig: Rig) -> None:
    hook = await rig.register(["task.succeeded", "quota.low"])
    rig.receiver.plan = [500, 503]  # two failures, then 204
    done = await finished_thumbnail(rig.api, rig.user, await upload_photo(rig.api, rig.user))
    await _until(lambda: len(rig.receiver.of("task.succeeded")) == 3)
    ids = {g["id"] for g in rig.receiver.of("task.succeeded")}
    assert ids == {f"task.succeeded.{done['id']}"}

    async def recorded() -> bool:  # the sender writes the answer down after the receiver gave it
        log = await rig.deliveries(hook["id"])
        return any(d["event_type"] == "task.succeeded" and d["status"] != "pending" for d in log)

    await wait_until(recorded, within=30)
    [delivery] = [d for d in await rig.deliveries(hook["id"]) if d["event_type"] == "task.succeeded"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("succeeded", 3, 204)

    replay = f"{HOOKS}/{hook['id']}/deliveries/{delivery['id']}/replay"
    assert data(await rig.api.client.post(replay, headers=rig.user.headers))["status"] == "pending"
    await _until(lambda: len(rig.receiver.of("task.succeeded")) == 4)
    assert {g["id"] for g in rig.receiver.of("task.succeeded")} == ids
    # quota.low: the threshold is 0 here and the user still has quota: not sent.
    assert rig.receiver.of("quota.low") == []


async def test_a_forged_or_stale_signature_is_what_the_receiver_refuses(rig: Rig) -> None:
    hook = await rig.register(["task.succeeded"])
    await finished_thumbnail(rig.api, rig.user, await upload_photo(rig.api, rig.user))
    await _until(lambda: rig.receiver.got)
    secret = rig.receiver.secret
    signer = Webhook(secret)
    body = json.dumps(rig.receiver.got[0]["event"]).encode()
    now = utcnow()
    genuine = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign("evt_1", now, body),
    }
    signer.verify(body, genuine)
    with pytest.raises(WebhookVerificationError):
        signer.verify(body.replace(b"succeeded", b"failed"), genuine)  # altered
    stale = now - timedelta(minutes=10)
    with pytest.raises(WebhookVerificationError):
        signer.verify(
            body,
            {
                **genuine,
                "webhook-timestamp": str(int(stale.timestamp())),
                "webhook-signature": signer.sign("evt_1", stale, body),
            },
        )
    # A new secret: what the old one signs is refused from then on.
    rotated = data(await rig.api.client.post(f"{HOOKS}/{hook['id']}/secret", headers=rig.user.headers))
    assert rotated["secret"] != secret
    with pytest.raises(WebhookVerificationError):
        Webhook(rotated["secret"]).verify(body, genuine)


async def test_internal_addresses_are_refused_when_registered_and_when_resolved(rig: Rig) -> None:
    for url in (
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest",
        "ftp://example.com/x",
        "http://u:p@example.com/",
    ):
        resp = await rig.api.client.post(
            HOOKS, json={"url": url, "events": ["task.succeeded"]}, headers=rig.user.headers
        )
        assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED"), url
    # A name that resolves to loopback, which only 127.0.0.1:<port> is allowed as: refused at send.
    port = rig.url.rsplit(":", 1)[1]
    hook = await rig.register(["task.succeeded"], url=f"http://localhost:{port}/hooks")
    await finished_thumbnail(rig.api, rig.user, await upload_photo(rig.api, rig.user))

    async def refused() -> bool:
        return any("forbidden_address" in (d["last_error"] or "") for d in await rig.deliveries(hook["id"]))

    await wait_until(refused, within=30)
    assert rig.receiver.got == []


async def test_an_endpoint_failing_for_the_whole_window_is_disabled_then_enabled(rig: Rig) -> None:
    hook = await rig.register(["task.succeeded"])
    rig.receiver.plan = [500] * 100
    async with unit_of_work(rig.api.infra.session_factory) as db:
        await db.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == hook["id"])
            .values(failing_since=utcnow() - timedelta(hours=25))  # failing since yesterday
        )
    await finished_thumbnail(rig.api, rig.user, await upload_photo(rig.api, rig.user))

    async def disabled() -> bool:
        listed = data(await rig.api.client.get(HOOKS, headers=rig.user.headers))
        return listed[0]["disabled_at"] is not None

    await wait_until(disabled, within=30)
    [shown] = data(await rig.api.client.get(HOOKS, headers=rig.user.headers))
    assert "every delivery failed since" in shown["disabled_reason"]
    async with unit_of_work(rig.api.infra.session_factory) as db:
        audit = await db.scalar(select(AuditLog).where(AuditLog.action == "webhook.disable"))
    assert audit is not None
    assert audit.target_id == str(hook["id"])
    # Someone else can neither see nor enable it.
    other = await sms_login(rig.api.client)
    theirs = await rig.api.client.patch(f"{HOOKS}/{hook['id']}", json={"enabled": True}, headers=other.headers)
    assert theirs.status_code == 404
    enabled = data(
        await rig.api.client.patch(f"{HOOKS}/{hook['id']}", json={"enabled": True}, headers=rig.user.headers)
    )
    assert (enabled["disabled_at"], enabled["failing_since"]) == (None, None)


async def test_quota_low_is_sent_once_a_day_while_the_quota_is_low(rig: Rig) -> None:
    await rig.register(["quota.low", "task.succeeded"])
    rig.api.infra.settings.webhook_quota_low = 10_000  # every balance is low now
    for seed in (1, 2):
        await finished_thumbnail(rig.api, rig.user, await upload_photo(rig.api, rig.user, seed))
    # Each task's events are recorded together: both tasks' are in once both tasks' have arrived.
    await _until(lambda: len(rig.receiver.of("task.succeeded")) == 2 and rig.receiver.of("quota.low"))
    [got] = rig.receiver.of("quota.low")
    assert got["ok"]
    assert got["id"] == f"quota.low.{rig.user.user['id']}.{utcnow().date().isoformat()}"
    quota = data(await rig.api.client.get("/api/v1/billing/quota", headers=rig.user.headers))
    assert got["event"]["data"]["available"] in (quota["available"], quota["available"] + 1)
