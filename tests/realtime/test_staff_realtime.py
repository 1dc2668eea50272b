"""The support console over Socket.IO: staff with tasks:read follow any user's task, staff with
catalog:read follow the providers' health; a plain user does neither. Roles are read from the
database at each subscribe, so a demotion takes effect on the next one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.realtime import Listener, live
from tests.fixtures.tasks import make_feature, step, wait_until
from wardrobe.core.db import unit_of_work
from wardrobe.models import User


async def _set_role(api: Api, who: Session, role: str) -> None:
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(User).where(User.id == who.user["id"]).values(role=role))


async def test_staff_follow_any_users_task_and_users_only_their_own(api_factory: Any) -> None:
    # Nothing runs tasks here: the task stays queued until the operator cancels it.
    api: Api = await api_factory(worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(
        api, admin, "quick", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    owner, stranger = await sms_login(api.client), await sms_login(api.client)
    operator, demoted = await login_as(api, "operator"), await login_as(api, "operator")
    resp = await api.client.post(
        "/api/v1/tasks", json={"feature": "quick", "inputs": {"key": "k"}}, headers=owner.headers
    )
    task_id = data(resp, 202)["id"]
    async with live(api.app) as url:
        staff, snooper, former = Listener(), Listener(), Listener()
        await staff.connect(url, operator.access)
        await snooper.connect(url, stranger.access)
        await former.connect(url, demoted.access)
        try:
            ack = await staff.subscribe(task_id, "no-such-task")
            assert ack["ok"] is True
            assert [(t["id"], t["status"]) for t in ack["tasks"]] == [(task_id, "queued")]
            assert ack["refused"] == ["no-such-task"]
            assert await snooper.subscribe(task_id) == {"ok": True, "tasks": [], "refused": [task_id]}
            await _set_role(api, demoted, "user")  # connected as staff, no longer staff
            assert await former.subscribe(task_id) == {"ok": True, "tasks": [], "refused": [task_id]}

            body = {"reason": "stuck in the queue"}
            data(await api.client.post(f"/api/v1/admin/tasks/{task_id}/cancel", json=body, headers=operator.headers))
            states = await staff.wait_terminal(task_id)
        finally:
            for listener in (staff, snooper, former):
                await listener.close()
    assert states[-1] == "canceled"
    assert staff.tasks[-1]["payload"]["refunded"] is True
    assert not snooper.tasks
    assert not former.tasks


def _instant(event: dict[str, Any]) -> dict[str, Any]:
    views: list[dict[str, Any]] = [p for p in event["payload"] if p["slug"] == "instant"]
    [view] = views
    return view


async def test_staff_follow_the_providers_health(api_factory: Any) -> None:
    api: Api = await api_factory(worker_in_process=False, socket_provider_push_seconds=0.1)
    operator, user = await login_as(api, "operator"), await sms_login(api.client)
    feed = api.app.state.realtime.providers
    async with live(api.app) as url:
        staff, plain = Listener(), Listener()
        await staff.connect(url, operator.access)
        await plain.connect(url, user.access)
        try:
            refused = await plain.client.call("subscribe_providers", {}, timeout=10)
            assert refused == {"ok": False, "code": "PERMISSION_DENIED", "providers": []}
            ack = await staff.client.call("subscribe_providers", {}, timeout=10)
            assert ack["ok"] is True
            http = data(await api.client.get("/api/v1/admin/providers", headers=operator.headers))
            assert ack["providers"] == http
            assert _instant({"payload": ack["providers"]})["enabled"] is True

            switch = {"enabled": False, "reason": "vendor outage"}
            data(await api.client.post("/api/v1/admin/providers/instant/switch", json=switch, headers=operator.headers))

            async def told_off() -> bool:
                return any(not _instant(e)["enabled"] for e in staff.providers)

            await wait_until(told_off)
            event = next(e for e in staff.providers if not _instant(e)["enabled"])
            assert event["type"] == "provider.health"
            assert _instant(event)["disabled_reason"] == "vendor outage"
            assert {p["slug"] for p in event["payload"]} == {p["slug"] for p in http}

            assert await staff.client.call("unsubscribe_providers", {}, timeout=10) == {"ok": True}
            assert feed.followers == 0
        finally:
            await staff.close()
            await plain.close()
    assert not plain.providers


async def test_an_admin_without_a_second_factor_follows_nothing_of_others_where_it_is_required(
    api_factory: Any,
) -> None:
    api: Api = await api_factory(worker_in_process=False)
    admin, user = await login_as(api, "admin"), await sms_login(api.client)
    await make_feature(
        api, admin, "quick", [step("only", provider="instant", action="passthrough")], {"r": "$steps.only.key"}
    )
    resp = await api.client.post(
        "/api/v1/tasks", json={"feature": "quick", "inputs": {"key": "k"}}, headers=user.headers
    )
    theirs = data(resp, 202)["id"]
    api.settings.admin_totp_required = True  # as in production: this admin signed in with a password only
    async with live(api.app) as url:
        socket = Listener()
        await socket.connect(url, admin.access)
        try:
            providers = await socket.client.call("subscribe_providers", {}, timeout=10)
            assert providers == {"ok": False, "code": "TOTP_ENROLMENT_REQUIRED", "providers": []}
            tasks = await socket.client.call("subscribe", {"task_ids": [theirs]}, timeout=10)
            assert (tasks["ok"], tasks["tasks"], tasks["refused"]) == (True, [], [theirs])
            api.settings.admin_totp_required = False
            tasks = await socket.client.call("subscribe", {"task_ids": [theirs]}, timeout=10)
            assert [t["id"] for t in tasks["tasks"]] == [theirs]
        finally:
            await socket.close()
