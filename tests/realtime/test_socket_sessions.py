"""A socket lives no longer than its login session and its token, opens only from allowed origins,
and is limited per address and per user.

On MariaDB + Redis the socket is held by one API process and the session is ended through another,
so the drop has to cross processes; on SQLite one embedded process does both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import socketio
from sqlalchemy import update

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, new_phone, request_code, sms_login
from tests.fixtures.realtime import Listener, live
from tests.fixtures.tasks import wait_until
from wardrobe.core.db import unit_of_work
from wardrobe.core.sqlite_writer import awaiting
from wardrobe.models import AuthSession, User
from wardrobe.models.base import utcnow


async def _pair(api_factory: Any, **overrides: Any) -> tuple[Api, Api]:
    """The app that holds the sockets, and the one the session is ended through."""
    holder: Api = await api_factory(**overrides)
    other: Api = await api_factory(**overrides) if holder.settings.redis_url else holder
    return holder, other


PASSWORD = "first-Secret-42"


async def _second_session(api: Api, first: Session) -> Session:
    """Another login of the same user (by password: a second SMS code would wait out the cooldown)."""
    if not first.user.get("has_password"):
        data(await api.client.put("/api/v1/auth/password", json={"new_password": PASSWORD}, headers=first.headers))
        first.user["has_password"] = True
    return await _password_login(api, first.phone)


async def _password_login(api: Api, phone: str) -> Session:
    body = {"method": "password", "phone": phone, "password": PASSWORD}
    got = data(await api.client.post("/api/v1/auth/login", json=body))
    return Session(phone, got["access_token"], got["refresh_token"], got["user"] | {"has_password": True})


async def _still_subscribed(listener: Listener) -> bool:
    ack = await listener.subscribe("no-such-task")
    return bool(ack["ok"])


async def test_logout_drops_that_sessions_sockets_and_logout_all_the_rest(api_factory: Any) -> None:
    holder, other = await _pair(api_factory)
    first = await sms_login(holder.client)
    second = await _second_session(holder, first)
    async with live(holder.app) as url:
        one, two = Listener(), Listener()
        await one.connect(url, first.access)
        await two.connect(url, second.access)
        try:
            data(await other.client.post("/api/v1/auth/logout", headers=first.headers))
            assert await one.wait_dropped() == ["AUTH_SESSION_REVOKED"]
            assert await _still_subscribed(two)  # another session of the same user stays

            third = await _second_session(other, first)
            data(await other.client.post("/api/v1/auth/logout-all", headers=third.headers))
            assert await two.wait_dropped() == ["AUTH_SESSION_REVOKED"]
        finally:
            await one.close()
            await two.close()


async def _change_password(api: Api, user: Session, _: Session) -> None:
    body = {"old_password": PASSWORD, "new_password": "another-Secret-97"}
    data(await api.client.put("/api/v1/auth/password", json=body, headers=user.headers))


async def _reset_password(api: Api, user: Session, _: Session) -> None:
    code = await request_code(api.client, user.phone, "reset_password")
    body = {"phone": user.phone, "code": code, "new_password": "another-Secret-97"}
    data(await api.client.post("/api/v1/auth/password/reset", json=body))


async def _ban(api: Api, user: Session, admin: Session) -> None:
    path = f"/api/v1/admin/users/{user.user['id']}"
    data(await api.client.patch(path, json={"status": "disabled", "reason": "abuse"}, headers=admin.headers))


async def _revoke(api: Api, user: Session, admin: Session) -> None:
    path = f"/api/v1/admin/users/{user.user['id']}/revoke-sessions"
    data(await api.client.post(path, json={"reason": "stolen phone"}, headers=admin.headers))


Ending = Callable[[Api, Session, Session], Awaitable[None]]


@pytest.mark.parametrize(
    ("ending", "keeps_own"),
    [(_change_password, True), (_reset_password, False), (_ban, False), (_revoke, False)],
    ids=["password-change", "password-reset", "ban", "admin-revoke"],
)
async def test_every_way_sessions_end_drops_their_sockets(api_factory: Any, ending: Ending, keeps_own: bool) -> None:
    holder, other = await _pair(api_factory)
    admin = await login_as(other, "admin")
    # Made with a password by an admin, so that no SMS was sent yet (a reset needs one).
    phone = new_phone()
    body = {"phone": phone, "password": PASSWORD}
    data(await other.client.post("/api/v1/admin/users", json=body, headers=admin.headers), 201)
    actor = await _password_login(holder, phone)  # the session that acts (its own socket too)
    bystander = await _password_login(holder, phone)
    async with live(holder.app) as url:
        own, theirs = Listener(), Listener()
        await own.connect(url, actor.access)
        await theirs.connect(url, bystander.access)
        try:
            await ending(other, actor, admin)
            expected = "ACCOUNT_DISABLED" if ending is _ban else "AUTH_SESSION_REVOKED"
            assert await theirs.wait_dropped() in (["AUTH_SESSION_REVOKED"], [expected])
            if keeps_own:
                assert await _still_subscribed(own)
            else:
                assert await own.wait_dropped() in (["AUTH_SESSION_REVOKED"], [expected])
        finally:
            await own.close()
            await theirs.close()


async def test_subscribe_checks_the_session_again(api: Api) -> None:
    """Even when no revocation reaches the socket (a missed broadcast), the next ``subscribe`` finds
    the session revoked or the account disabled, answers so and drops the socket."""
    revoked, disabled = await sms_login(api.client), await sms_login(api.client)
    async with live(api.app) as url:
        a, b = Listener(), Listener()
        await a.connect(url, revoked.access)
        await b.connect(url, disabled.access)
        try:
            async with unit_of_work(api.infra.session_factory) as db:
                await db.execute(
                    update(AuthSession).where(AuthSession.user_id == revoked.user["id"]).values(revoked_at=utcnow())
                )
                await db.execute(update(User).where(User.id == disabled.user["id"]).values(status="disabled"))
            ack = await a.subscribe("any-task")
            assert ack == {"ok": False, "code": "AUTH_SESSION_REVOKED", "tasks": [], "refused": ["any-task"]}
            assert await a.wait_dropped() == ["AUTH_SESSION_REVOKED"]
            assert (await b.subscribe("any-task"))["code"] == "ACCOUNT_DISABLED"
            assert await b.wait_dropped() == ["ACCOUNT_DISABLED"]
        finally:
            await a.close()
            await b.close()


async def test_a_socket_ends_with_its_access_token(api_factory: Any) -> None:
    api: Api = await api_factory(access_token_ttl_seconds=2)
    user = await sms_login(api.client)
    async with live(api.app) as url:
        listener = Listener()
        await listener.connect(url, user.access)
        try:
            assert await listener.wait_dropped(within=20) == ["AUTH_TOKEN_EXPIRED"]
        finally:
            await listener.close()


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_only_allowed_origins_open_a_socket(api_factory: Any, transport: str) -> None:
    api: Api = await api_factory(cors_origins=["https://app.example.com"])
    user = await sms_login(api.client)
    hub = api.app.state.realtime
    async with live(api.app) as url:

        async def opens(origin: str | None) -> bool:
            listener = Listener()
            headers = {"Origin": origin} if origin else {}
            try:
                await listener.connect(url, user.access, transports=(transport,), headers=headers)
            except socketio.exceptions.ConnectionError:
                return False
            # Closed by the server's Engine.IO, which also answers a long-poll in flight at once
            # (after a client's own close it would hang up to the ping interval).
            await hub.sio.eio.disconnect()
            await listener.wait_dropped()
            return True

        assert not await opens("https://evil.example")
        assert not await opens("null")
        assert await opens(url)  # the service's own origin
        assert await opens("https://app.example.com")
        assert await opens(None)  # WeChat mini programs and native clients send no Origin


async def test_with_no_origins_configured_only_the_same_origin_opens(api: Api) -> None:
    user = await sms_login(api.client)
    async with live(api.app) as url:
        foreign = Listener()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await foreign.connect(url, user.access, headers={"Origin": "https://evil.example"})
        same = Listener()
        await same.connect(url, user.access, headers={"Origin": url})
        await same.close()


async def test_connects_are_limited_per_address(api_factory: Any) -> None:
    api: Api = await api_factory(socket_connect_limit_per_ip="3/minute", socket_connect_limit_per_user="")
    users = [await sms_login(api.client) for _ in range(4)]
    async with live(api.app) as url:
        opened: list[Listener] = []
        try:
            for user in users[:3]:
                listener = Listener()
                await listener.connect(url, user.access)
                opened.append(listener)
            refused = Listener()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await refused.connect(url, users[3].access)
            assert refused.refused_with() == "RATE_LIMITED"
            # A bad token spends the address's window too: it cannot be used to probe for free.
            assert refused.refusals[-1]["data"]["retry_after"] >= 1
        finally:
            for listener in opened:
                await listener.close()


async def test_a_user_holds_at_most_the_configured_sockets_on_every_process(api_factory: Any) -> None:
    holder, other = await _pair(api_factory, sockets_per_user=2)
    user = await sms_login(holder.client)
    hub_of = {id(holder): holder.app.state.realtime, id(other): other.app.state.realtime}
    async with live(holder.app) as url_a, live(other.app) as url_b:
        first, second, third = Listener(), Listener(), Listener()
        await first.connect(url_a, user.access)
        await second.connect(url_b, user.access)
        try:
            with pytest.raises(socketio.exceptions.ConnectionError):
                await third.connect(url_a, user.access)
            assert third.refused_with() == "CONNECTION_LIMIT_REACHED"
            await second.close()

            async def seat_freed() -> bool:
                return not hub_of[id(other)].held or (other is holder and len(hub_of[id(holder)].held) == 1)

            await wait_until(seat_freed)
            again = Listener()
            await again.connect(url_a, user.access)
            await again.close()
        finally:
            await first.close()
            await second.close()


_HTTP_PATH_FILES = (
    "fastapi/routing.py:",
    "starlette/routing.py:",
    "middleware/exceptions.py:",
    "middleware/asyncexitstack.py:",
    "core/middleware.py:",
    "core/edge_limits.py:",
)


def _socket_stacks() -> list[list[str]]:
    """The frames each live Engine.IO websocket's ASGI call holds in this process."""
    stacks = []
    for task in asyncio.all_tasks():
        frames = awaiting(task, limit=200)
        if any(f.startswith("engineio/async_socket.py:") and f.endswith(" _websocket_handler") for f in frames):
            stacks.append(frames)
    return stacks


async def test_a_live_websocket_keeps_no_frame_of_the_http_path(api_factory: Any) -> None:
    """A websocket is one ASGI call for the connection's whole life: it goes straight to Socket.IO,
    so none of the HTTP middleware or routing stays on its stack (memory per socket). Polling keeps
    the edge: its answers carry the request id header."""
    api: Api = await api_factory()
    user = await sms_login(api.client)
    async with live(api.app) as url:
        listener = Listener()
        await listener.connect(url, user.access)
        try:
            stacks = _socket_stacks()
            assert len(stacks) == 1
            [frames] = stacks
            assert any(f.startswith("async_drivers/asgi.py:") for f in frames), frames
            assert [f for f in frames if f.startswith(_HTTP_PATH_FILES)] == []
        finally:
            await listener.close()
        async with httpx.AsyncClient(base_url=url) as http:
            polled = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert polled.status_code == 200
        assert polled.headers.get("x-request-id")
