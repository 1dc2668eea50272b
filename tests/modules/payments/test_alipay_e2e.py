"""Alipay end to end: a user buys through the HTTP API, the local Alipay peer takes the
payment and calls our notify endpoint back over real HTTP, admins refund through the API. Every
notification is checked (signature, app, seller, amount, order); fulfilment and claw-back happen
once however often and wherever the platform calls; ``success`` is said only after the commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from tests.conftest import Api, Backend
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.gate import TcpGate
from tests.fixtures.realtime import live
from tests.fixtures.tasks import OWN_PROCESSES, free_port, spawn_worker, stop_workers, wait_until, worker_env
from tests.peers.alipay import Attempt, Delivery
from tests.peers.alipay_fixtures import NOTIFY_PATH, ServedAlipayPeer, alipay_env, alipay_settings
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, Order, PaymentNotification, Refund
from wardrobe.models.base import utcnow
from wardrobe.modules.payments import fulfilment, reconciliation, refunds
from wardrobe.seed import seed_plans

ApiFactory = Callable[..., Awaitable[Api]]


@asynccontextmanager
async def shop(api_factory: ApiFactory, peer: ServedAlipayPeer, **overrides: object) -> AsyncIterator[Api]:
    """An app configured for the peer, served on the loopback port its notify_url names."""
    port = free_port()
    api = await api_factory(**alipay_settings(peer, f"http://127.0.0.1:{port}"), **overrides)
    async with unit_of_work(api.infra.session_factory) as db:
        await seed_plans(db)
    async with live(api.app, port):
        yield api


async def buy(api: Api, user: Session, sku: str, channel: str) -> dict[str, Any]:
    resp = await api.client.post("/api/v1/billing/orders", json={"sku": sku, "channel": channel}, headers=user.headers)
    order: dict[str, Any] = data(resp, 201)
    return order


async def quota_of(api: Api, user: Session) -> dict[str, Any]:
    found: dict[str, Any] = data(await api.client.get("/api/v1/billing/quota", headers=user.headers))
    return found


async def order_of(api: Api, user: Session, order_no: str) -> dict[str, Any]:
    found: dict[str, Any] = data(await api.client.get(f"/api/v1/billing/orders/{order_no}", headers=user.headers))
    return found


async def count_ledger(api: Api, **where: Any) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        stmt = select(func.count()).select_from(LedgerEntry)
        for name, value in where.items():
            stmt = stmt.where(getattr(LedgerEntry, name) == value)
        return int(await db.scalar(stmt) or 0)


async def clawed(api: Api, user_id: int) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        total = await db.scalar(
            select(func.sum(LedgerEntry.amount)).where(
                LedgerEntry.user_id == user_id, LedgerEntry.kind == "refund_clawback"
            )
        )
    return abs(int(total or 0))


async def inbox(api: Api, notify_id: str) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        stmt = select(func.count()).select_from(PaymentNotification).where(PaymentNotification.event_id == notify_id)
        return int(await db.scalar(stmt) or 0)


def notify_url(api: Api) -> str:
    return api.settings.payment_notify_base_url + NOTIFY_PATH


async def paid_pack(api: Api, peer: ServedAlipayPeer, user: Session, sku: str = "pack-500") -> str:
    """An order bought by QR code, paid, notified and fulfilled."""
    order = await buy(api, user, sku, "alipay_qr")
    delivery = peer.pay(order["order_no"])
    assert delivery is not None
    await delivery.wait_delivered()
    assert (await order_of(api, user, order["order_no"]))["status"] == "fulfilled"
    return str(order["order_no"])


# -- buying through each channel -------------------------------------------------------------


async def test_a_quota_pack_bought_by_qr_code_is_fulfilled_when_alipay_notifies(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer
) -> None:
    async with shop(api_factory, alipay_peer) as api:
        user = await sms_login(api.client)
        before = await quota_of(api, user)
        order = await buy(api, user, "pack-100", "alipay_qr")
        no = order["order_no"]
        trade = alipay_peer.trade(no)
        assert order["pay_params"] == {"qr_code": trade.qr_code}
        assert (order["status"], order["amount_fen"], trade.total_fen) == ("pending", 990, 990)
        assert trade.notify_url == notify_url(api)
        assert alipay_peer.calls_for(no) == {"alipay.trade.precreate": 1}

        seen: list[tuple[str, str, int]] = []

        async def at_answer(delivery: Delivery, attempt: Attempt) -> None:
            # Read through another connection the moment the answer arrives: what "success"
            # covers must already be committed.
            async with unit_of_work(api.infra.session_factory) as db:
                status = await db.scalar(select(Order.status).where(Order.order_no == no))
            seen.append((attempt.body, str(status), await count_ledger(api, ref=f"order:{no}")))

        alipay_peer.observer = at_answer
        alipay_peer.scan(no)
        delivery = alipay_peer.pay(no)
        assert delivery is not None
        answer = await delivery.wait_delivered()
        assert (answer.number, answer.status, answer.body) == (1, 200, "success")
        assert seen == [("success", "fulfilled", 1)]
        paid = await order_of(api, user, no)
        assert (paid["status"], paid["paid_fen"], paid["pay_params"]) == ("fulfilled", 990, None)
        after = await quota_of(api, user)
        assert after["balance"] == before["balance"] + 100
        ledger = data(await api.client.get("/api/v1/billing/ledger", headers=user.headers))["items"]
        assert [(e["kind"], e["amount"]) for e in ledger if e["ref"] == f"order:{no}"] == [("purchase", 100)]
        assert await inbox(api, delivery.notify_id) == 1


@pytest.mark.parametrize(
    ("channel", "method", "product"),
    [
        ("alipay_page", "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
        ("alipay_wap", "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    ],
)
async def test_a_membership_bought_through_a_pay_url_is_fulfilled(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer, channel: str, method: str, product: str
) -> None:
    async with shop(api_factory, alipay_peer) as api:
        user = await sms_login(api.client)
        before = await quota_of(api, user)
        assert before["membership"] is None
        order = await buy(api, user, "member-monthly", channel)
        no = order["order_no"]
        assert alipay_peer.calls_for(no) == {}  # a pay URL makes no server call
        url = order["pay_params"]["pay_url"]
        assert url.startswith(alipay_peer.gateway_url + "?")
        trade = alipay_peer.verify_pay_url(url)  # what the cashier checks when the buyer opens it
        assert (trade.out_trade_no, trade.method, trade.product_code) == (no, method, product)
        assert (trade.total_fen, trade.notify_url, trade.subject) == (2990, notify_url(api), "月度会员")
        async with httpx.AsyncClient() as browser:
            cashier = await browser.get(url)
        assert f"收银台 {no} 29.90" in cashier.text
        delivery = alipay_peer.pay(no)
        assert delivery is not None
        assert (await delivery.wait_delivered()).body == "success"
        after = await quota_of(api, user)
        assert after["balance"] == before["balance"] + 300
        assert after["membership"]["plan"] == "member-monthly"
        assert (await order_of(api, user, no))["status"] == "fulfilled"
        assert await count_ledger(api, ref=f"order:{no}") == 1


# -- duplicates ------------------------------------------------------------------------------


async def test_the_same_notification_twenty_times_in_parallel_and_in_sequence_fulfils_once(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer
) -> None:
    async with shop(api_factory, alipay_peer) as api:
        user = await sms_login(api.client)
        before = (await quota_of(api, user))["balance"]
        no = (await buy(api, user, "pack-100", "alipay_qr"))["order_no"]
        alipay_peer.pay(no, notify=False)
        fields = alipay_peer.notification(no)
        url = notify_url(api)
        parallel = await asyncio.gather(*(alipay_peer.post_notification(fields, url) for _ in range(20)))
        sequential = [await alipay_peer.post_notification(fields, url) for _ in range(20)]
        assert [(a.status, a.body) for a in parallel + sequential] == [(200, "success")] * 40
        assert (await quota_of(api, user))["balance"] == before + 100
        assert await count_ledger(api, ref=f"order:{no}") == 1
        assert await inbox(api, fields["notify_id"]) == 1


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_the_same_notification_split_across_two_app_processes_fulfils_once(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer, tmp_path: Path
) -> None:
    async with shop(api_factory, alipay_peer) as api:
        user = await sms_login(api.client)
        before = (await quota_of(api, user))["balance"]
        no = (await buy(api, user, "pack-100", "alipay_qr"))["order_no"]
        alipay_peer.pay(no, notify=False)
        fields = alipay_peer.notification(no)
        ports = [free_port(), free_port()]
        servers = []
        for i, port in enumerate(ports):
            base = f"http://127.0.0.1:{port}"
            env = worker_env(
                api,
                tmp_path,
                worker_in_process="false",
                extra_providers="[]",
                **alipay_env(alipay_peer, base, tmp_path),
            )
            servers.append(
                spawn_worker(env, tmp_path / f"api{i}.log", "serve", "--host", "127.0.0.1", "--port", str(port))
            )
        try:
            async with httpx.AsyncClient(timeout=30) as client:

                async def both_up() -> bool:
                    assert all(s.poll() is None for s in servers), "an API process exited; see its log"
                    try:
                        for port in ports:
                            (await client.get(f"http://127.0.0.1:{port}/health")).raise_for_status()
                    except httpx.HTTPError:
                        return False
                    return True

                await wait_until(both_up, within=60, every=0.2)
                urls = [f"http://127.0.0.1:{port}{NOTIFY_PATH}" for port in ports]
                parallel = await asyncio.gather(
                    *(alipay_peer.post_notification(fields, urls[i % 2], http=client) for i in range(20))
                )
                sequential = [await alipay_peer.post_notification(fields, urls[i % 2], http=client) for i in range(20)]
        finally:
            stop_workers(servers)
        assert [(a.status, a.body) for a in parallel + sequential] == [(200, "success")] * 40
        assert (await quota_of(api, user))["balance"] == before + 100
        assert await count_ledger(api, ref=f"order:{no}") == 1
        assert await inbox(api, fields["notify_id"]) == 1
        assert (await order_of(api, user, no))["status"] == "fulfilled"


# -- refused notifications -------------------------------------------------------------------


async def test_forged_or_mismatched_notifications_change_nothing(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer
) -> None:
    async with shop(api_factory, alipay_peer) as api:
        user = await sms_login(api.client)
        before = (await quota_of(api, user))["balance"]
        no = (await buy(api, user, "pack-100", "alipay_qr"))["order_no"]
        alipay_peer.pay(no, notify=False)
        genuine = alipay_peer.notification(no)
        bad = {
            "forged signature": alipay_peer.notification(no, forged=True),
            "changed after signing": {**genuine, "total_amount": "0.01"},
            "no signature": {k: v for k, v in genuine.items() if k != "sign"},
            "wrong amount": alipay_peer.notification(no, total_amount="0.01", receipt_amount="0.01"),
            "wrong app_id": alipay_peer.notification(no, app_id="2021000000009999"),
            "wrong seller_id": alipay_peer.notification(no, seller_id="2088000000009999"),
            "unknown order": alipay_peer.notification(no, out_trade_no="WD20990101000000FFFFFFFFFFFF"),
        }
        url = notify_url(api)
        for case, fields in bad.items():
            attempt = await alipay_peer.post_notification(fields, url)
            assert attempt.body == "fail", case
            assert attempt.status is not None
            assert attempt.status >= 400, case
        order = await order_of(api, user, no)
        assert (order["status"], order["paid_fen"]) == ("pending", 0)
        assert (await quota_of(api, user))["balance"] == before
        assert await count_ledger(api, ref=f"order:{no}") == 0
        assert await inbox(api, genuine["notify_id"]) == 0
        # The genuine one still goes through: the refusals were about the notifications.
        assert (await alipay_peer.post_notification(genuine, url)).body == "success"
        assert await count_ledger(api, ref=f"order:{no}") == 1


# -- the database fails while a notification is processed ------------------------------------


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_notification_lost_to_a_database_failure_is_retried_and_fulfils_once(
    backend: Backend, api_factory: ApiFactory, alipay_peer: ServedAlipayPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = make_url(backend.database_url)
    gate = TcpGate(db_url.host or "127.0.0.1", db_url.port or 3306)
    await gate.open()
    alipay_peer.retry_delays = None  # retries happen when the test nudges
    try:
        through_gate = db_url.set(host="127.0.0.1", port=gate.port).render_as_string(hide_password=False)
        async with shop(api_factory, alipay_peer, database_url=through_gate, db_pool_timeout=2.0) as api:
            user = await sms_login(api.client)
            before = (await quota_of(api, user))["balance"]
            no = (await buy(api, user, "pack-100", "alipay_qr"))["order_no"]
            original = fulfilment.apply_payment
            cuts = 0

            async def fulfil_then_lose_the_database(*args: Any, **kwargs: Any) -> str:
                nonlocal cuts
                outcome = await original(*args, **kwargs)
                if cuts == 0:  # the work is done in the transaction; the commit will not happen
                    cuts += 1
                    await gate.cut()
                return outcome

            monkeypatch.setattr(fulfilment, "apply_payment", fulfil_then_lose_the_database)
            delivery = alipay_peer.pay(no)
            assert delivery is not None
            [first] = await delivery.wait_attempts(1)
            assert (first.status, first.body) == (500, "fail")
            assert cuts == 1
            await gate.open()
            assert (await order_of(api, user, no))["status"] == "pending"  # nothing half-done was kept
            assert await count_ledger(api, ref=f"order:{no}") == 0
            assert await inbox(api, delivery.notify_id) == 0
            delivery.nudge()
            answer = await delivery.wait_delivered()
            assert (answer.number, answer.body) == (2, "success")
            assert (await order_of(api, user, no))["status"] == "fulfilled"
            assert (await quota_of(api, user))["balance"] == before + 100
            assert await count_ledger(api, ref=f"order:{no}") == 1
            again = await alipay_peer.post_notification(delivery.fields, notify_url(api))
            assert again.body == "success"
            assert await count_ledger(api, ref=f"order:{no}") == 1
    finally:
        await gate.close()


# -- reconciliation --------------------------------------------------------------------------


async def _backdate(api: Api, order_no: str, *, expired: bool) -> None:
    past = utcnow() - timedelta(minutes=api.settings.reconcile_after_minutes + 5)
    values: dict[str, Any] = {"created_at": past}
    if expired:
        values["expires_at"] = past
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(Order).where(Order.order_no == order_no).values(**values))


async def test_reconciliation_fulfils_a_silent_payment_and_closes_expired_orders(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer
) -> None:
    async with shop(api_factory, alipay_peer) as api:
        user = await sms_login(api.client)
        before = (await quota_of(api, user))["balance"]
        silent = (await buy(api, user, "pack-100", "alipay_qr"))["order_no"]
        scanned = (await buy(api, user, "pack-100", "alipay_qr"))["order_no"]
        abandoned = (await buy(api, user, "pack-100", "alipay_qr"))["order_no"]
        recent = (await buy(api, user, "pack-100", "alipay_qr"))["order_no"]
        alipay_peer.pay(silent, notify=False)  # paid, but no notification ever arrives
        alipay_peer.scan(scanned)
        await _backdate(api, silent, expired=False)
        await _backdate(api, scanned, expired=True)
        await _backdate(api, abandoned, expired=True)

        report = await reconciliation.reconcile_once(
            api.infra.session_factory,
            api.infra.payments,
            settings=api.infra.settings,
            cache=api.infra.cache,
            announcer=api.infra.runtime.announcer,
        )
        assert (report.fulfilled, report.closed, report.errors) == (1, 2, 0)
        assert (await order_of(api, user, silent))["status"] == "fulfilled"
        assert (await quota_of(api, user))["balance"] == before + 100
        assert await count_ledger(api, ref=f"order:{silent}") == 1
        assert (await order_of(api, user, scanned))["status"] == "closed"
        assert alipay_peer.trade(scanned).status == "TRADE_CLOSED"  # closed at Alipay too
        assert alipay_peer.calls_for(scanned)["alipay.trade.close"] == 1
        assert (await order_of(api, user, abandoned))["status"] == "closed"
        assert alipay_peer.calls_for(abandoned)["alipay.trade.close"] == 1  # never scanned: nothing to close
        assert (await order_of(api, user, recent))["status"] == "pending"
        assert "alipay.trade.query" not in alipay_peer.calls_for(recent)

        again = await reconciliation.reconcile_once(
            api.infra.session_factory,
            api.infra.payments,
            settings=api.infra.settings,
            cache=api.infra.cache,
            announcer=api.infra.runtime.announcer,
        )
        assert (again.fulfilled, again.closed) == (0, 0)
        assert await count_ledger(api, ref=f"order:{silent}") == 1
        assert alipay_peer.calls_for(silent)["alipay.trade.query"] == 1


# -- refunds ---------------------------------------------------------------------------------


async def _refund(api: Api, admin: Session, order_no: str, amount_fen: int | None = None) -> httpx.Response:
    body: dict[str, Any] = {"reason": "customer asked"}
    if amount_fen is not None:
        body["amount_fen"] = amount_fen
    return await api.client.post(f"/api/v1/admin/orders/{order_no}/refund", json=body, headers=admin.headers)


async def test_an_admin_refund_repeated_ten_times_refunds_and_claws_back_once(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer
) -> None:
    async with shop(api_factory, alipay_peer) as api:
        admin = await login_as(api, "admin")
        user = await sms_login(api.client)
        start = (await quota_of(api, user))["balance"]
        no = await paid_pack(api, alipay_peer, user)
        assert (await quota_of(api, user))["balance"] == start + 500

        concurrent = await asyncio.gather(*(_refund(api, admin, no) for _ in range(10)))
        sequential = [await _refund(api, admin, no) for _ in range(10)]
        accepted = [r for r in concurrent if r.status_code == 201]
        assert len(accepted) == 1, [r.text for r in concurrent]
        refused = [r for r in concurrent + sequential if r.status_code != 201]
        assert len(refused) == 19
        assert {r.json()["code"] for r in refused} == {"REFUND_NOT_ALLOWED"}
        refund = accepted[0].json()["data"]
        assert (refund["status"], refund["amount_fen"], refund["quota"]) == ("succeeded", 3990, 500)

        await alipay_peer.wait_idle()  # the refund notification Alipay sends as well
        assert all(d.delivered for d in alipay_peer.deliveries)
        refund_fields = alipay_peer.refund_notification(no, refund["refund_no"])
        assert refund_fields["trade_status"] == "TRADE_CLOSED"
        for _ in range(5):
            assert (await alipay_peer.post_notification(refund_fields, notify_url(api))).body == "success"

        assert [f for f in alipay_peer.fund_changes if f[2] == "Y"] == [(no, refund["refund_no"], "Y")]
        assert alipay_peer.trade(no).refunded_fen == 3990
        assert await clawed(api, user.user["id"]) == 500
        assert await count_ledger(api, user_id=user.user["id"], kind="refund_clawback") == 1
        assert (await quota_of(api, user))["balance"] == start
        detail = data(await api.client.get(f"/api/v1/admin/orders/{no}", headers=admin.headers))
        assert (detail["status"], detail["refunded_fen"], detail["quota_clawed"]) == ("refunded", 3990, 500)
        assert [r["status"] for r in detail["refunds"]] == ["succeeded"]
        listed = data(
            await api.client.get("/api/v1/admin/orders", params={"status": "refunded"}, headers=admin.headers)
        )
        assert [o["order_no"] for o in listed["items"]] == [no]


async def test_the_same_refund_number_sent_ten_times_refunds_once(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer
) -> None:
    """Alipay did the refund but its answer was lost: asking again with the same out_request_no
    (ten times at once) gets fund_change N, and the refund settles once from the refund query."""
    async with shop(api_factory, alipay_peer) as api:
        admin = await login_as(api, "admin")
        user = await sms_login(api.client)
        start = (await quota_of(api, user))["balance"]
        no = await paid_pack(api, alipay_peer, user)
        alipay_peer.notify_refunds = False
        alipay_peer.fail_next("alipay.trade.refund", "lost_answer")
        pending = data(await _refund(api, admin, no), 201)
        assert pending["status"] == "processing"
        assert alipay_peer.trade(no).refunded_fen == 3990  # done at Alipay; we do not know yet
        assert (await quota_of(api, user))["held"] == 500  # the claw-back is held meanwhile
        async with unit_of_work(api.infra.session_factory) as db:
            refund_id = await db.scalar(select(Refund.id).where(Refund.refund_no == pending["refund_no"]))
        assert refund_id is not None
        await asyncio.gather(
            *(
                refunds.push_refund(
                    api.infra.session_factory,
                    api.infra.payments,
                    refund_id,
                    cache=api.infra.cache,
                    announcer=api.infra.runtime.announcer,
                )
                for _ in range(10)
            )
        )
        changes = [f[2] for f in alipay_peer.fund_changes if f[1] == pending["refund_no"]]
        assert changes.count("Y") == 1
        assert changes.count("N") >= 1
        assert alipay_peer.calls_for(no)["alipay.trade.refund"] == len(changes)
        assert await count_ledger(api, user_id=user.user["id"], kind="refund_clawback") == 1
        me = await quota_of(api, user)
        assert (me["balance"], me["held"]) == (start, 0)
        detail = data(await api.client.get(f"/api/v1/admin/orders/{no}", headers=admin.headers))
        assert (detail["status"], detail["refunded_fen"]) == ("refunded", 3990)


async def test_partial_refunds_never_exceed_what_was_paid(
    api_factory: ApiFactory, alipay_peer: ServedAlipayPeer
) -> None:
    async with shop(api_factory, alipay_peer) as api:
        admin = await login_as(api, "admin")
        user = await sms_login(api.client)
        start = (await quota_of(api, user))["balance"]
        no = await paid_pack(api, alipay_peer, user)
        answers = await asyncio.gather(*(_refund(api, admin, no, 1000) for _ in range(10)))
        assert sorted(r.status_code for r in answers).count(201) == 3, [r.text for r in answers]
        assert {r.json()["code"] for r in answers if r.status_code != 201} == {"REFUND_NOT_ALLOWED"}
        assert alipay_peer.trade(no).refunded_fen == 3000
        assert (await _refund(api, admin, no, 991)).status_code != 201  # 990 fen are left
        assert data(await _refund(api, admin, no, 990), 201)["status"] == "succeeded"
        assert (await _refund(api, admin, no, 1)).status_code != 201
        await alipay_peer.wait_idle()
        trade = alipay_peer.trade(no)
        assert (trade.refunded_fen, trade.status, len(trade.refunds)) == (3990, "TRADE_CLOSED", 4)
        detail = data(await api.client.get(f"/api/v1/admin/orders/{no}", headers=admin.headers))
        assert (detail["status"], detail["paid_fen"], detail["refunded_fen"]) == ("refunded", 3990, 3990)
        assert sorted(r["amount_fen"] for r in detail["refunds"]) == [990, 1000, 1000, 1000]
        # Proportional and cumulative: four partial refunds take back exactly the 500 bought.
        assert await clawed(api, user.user["id"]) == 500
        assert (await quota_of(api, user))["balance"] == start
