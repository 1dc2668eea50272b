"""The WeChat client against the local WeChat peer, with the token cached in process and in Redis."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from tests.peers.fixtures import PeerClock, ServedWeChatPeer
from tests.peers.wechat import JSCODE2SESSION_PATH, STABLE_TOKEN_PATH, TEST_WECHAT_APPID, TEST_WECHAT_SECRET
from wardrobe.modules.auth.wechat_client import (
    WeChatClient,
    WeChatCodeInvalidError,
    WeChatConfigError,
    WeChatError,
    WeChatPhone,
    WeChatRateLimitedError,
    WeChatUnavailableError,
    WeChatUserBlockedError,
)

ClientFactory = Callable[..., WeChatClient]


@pytest.fixture
def wechat_cache_prefix() -> str:
    return f"wardrobe-test-{uuid.uuid4().hex}"


@pytest.fixture
async def wechat_redis(wechat_cache_prefix: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(REDIS_URL)
    yield redis
    keys = [key async for key in redis.scan_iter(match=f"{wechat_cache_prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


@pytest.fixture(params=["in-process", "redis"])
def token_cache(request: pytest.FixtureRequest, wechat_redis: Redis) -> Redis | None:
    """Where the client caches the stable token; ``None`` means process memory."""
    return wechat_redis if request.param == "redis" else None


@pytest.fixture
async def wechat_client_factory(
    wechat_peer: ServedWeChatPeer, wechat_cache_prefix: str
) -> AsyncIterator[ClientFactory]:
    clients: list[WeChatClient] = []

    def make(**overrides: Any) -> WeChatClient:
        options: dict[str, Any] = {
            "appid": TEST_WECHAT_APPID,
            "secret": TEST_WECHAT_SECRET,
            "base_url": wechat_peer.base_url,
            "cache_key_prefix": wechat_cache_prefix,
        } | overrides
        client = WeChatClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def _token_key(prefix: str) -> str:
    return f"{prefix}:wechat:{TEST_WECHAT_APPID}:stable_token"


async def _force_refresh_elsewhere(peer: ServedWeChatPeer) -> str:
    """Another party force-refreshes the token, revoking the one our client holds."""
    body = {
        "grant_type": "client_credential",
        "appid": TEST_WECHAT_APPID,
        "secret": TEST_WECHAT_SECRET,
        "force_refresh": True,
    }
    async with httpx.AsyncClient(base_url=peer.base_url, timeout=5) as http:
        answer = (await http.post(STABLE_TOKEN_PATH, json=body)).json()
    token: str = answer["access_token"]
    return token


def _mock_http(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


# -- code2session ----------------------------------------------------------------------------


async def test_code2session_returns_the_session_and_hides_the_session_key(
    wechat_peer: ServedWeChatPeer, wechat_client_factory: ClientFactory
) -> None:
    wechat_peer.register_login_code("login-code-1", "openid-1", unionid="unionid-1")
    client = wechat_client_factory()

    session = await client.code2session("login-code-1")

    assert (session.openid, session.unionid) == ("openid-1", "unionid-1")
    assert session.session_key == wechat_peer.session_keys["openid-1"]
    assert session.session_key not in repr(session)
    assert TEST_WECHAT_SECRET not in repr(client)


async def test_code2session_without_unionid(
    wechat_peer: ServedWeChatPeer, wechat_client_factory: ClientFactory
) -> None:
    wechat_peer.register_login_code("login-code-1", "openid-1")

    session = await wechat_client_factory().code2session("login-code-1")

    assert session.unionid is None


@pytest.mark.parametrize(
    ("setup", "overrides", "error", "errcode"),
    [
        ("unregistered", {}, WeChatCodeInvalidError, 40029),
        ("blocked", {}, WeChatUserBlockedError, 40226),
        ("rate-limited", {}, WeChatRateLimitedError, 45011),
        ("registered", {"secret": "another-fake-secret"}, WeChatConfigError, 40125),
        ("registered", {"appid": "wx-some-other-app"}, WeChatConfigError, 40013),
    ],
)
async def test_code2session_errors_map_to_exceptions(
    wechat_peer: ServedWeChatPeer,
    wechat_client_factory: ClientFactory,
    setup: str,
    overrides: dict[str, str],
    error: type[WeChatError],
    errcode: int,
) -> None:
    if setup != "unregistered":
        wechat_peer.register_login_code("login-code-1", "openid-1")
    if setup == "blocked":
        wechat_peer.block_code("login-code-1")
    if setup == "rate-limited":
        wechat_peer.code2session_per_minute = 0

    with pytest.raises(error) as failure:
        await wechat_client_factory(**overrides).code2session("login-code-1")

    assert failure.type is error
    assert failure.value.errcode == errcode
    assert wechat_peer.code2session_calls == 1


async def test_busy_answer_is_retried_once(wechat_peer: ServedWeChatPeer, wechat_client_factory: ClientFactory) -> None:
    wechat_peer.register_login_code("login-code-1", "openid-1")
    wechat_peer.fail_next(1, path=JSCODE2SESSION_PATH)

    session = await wechat_client_factory().code2session("login-code-1")

    assert session.openid == "openid-1"
    assert wechat_peer.code2session_calls == 2


async def test_busy_twice_is_unavailable(wechat_peer: ServedWeChatPeer, wechat_client_factory: ClientFactory) -> None:
    wechat_peer.register_login_code("login-code-1", "openid-1")
    wechat_peer.fail_next(2, path=JSCODE2SESSION_PATH)

    with pytest.raises(WeChatUnavailableError) as failure:
        await wechat_client_factory().code2session("login-code-1")

    assert failure.value.errcode == -1
    assert wechat_peer.code2session_calls == 2


@pytest.mark.parametrize(
    ("answer", "attempts"),
    [
        (lambda request: httpx.Response(503, text="busy"), 2),
        (lambda request: httpx.Response(200, text="<html>not json</html>"), 2),
        (lambda request: httpx.Response(200, json=["not", "an", "object"]), 2),
        # A well-formed answer without an openid is not retried: the code is probably used up.
        (lambda request: httpx.Response(200, json={"errcode": 0}), 1),
    ],
    ids=["5xx", "not-json", "not-an-object", "no-openid"],
)
async def test_unexpected_answers_are_unavailable(
    wechat_client_factory: ClientFactory, answer: Callable[[httpx.Request], httpx.Response], attempts: int
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    async with _mock_http(handler) as http:
        with pytest.raises(WeChatUnavailableError) as failure:
            await wechat_client_factory(http=http).code2session("login-code-1")

    assert failure.value.errcode == -1
    assert len(seen) == attempts


async def test_timeout_is_unavailable_and_never_shows_the_secret(
    wechat_client_factory: ClientFactory,
) -> None:
    attempts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    async with _mock_http(handler) as http:
        with pytest.raises(WeChatUnavailableError) as failure:
            await wechat_client_factory(http=http).code2session("login-code-1")

    assert failure.value.errcode == -1
    assert TEST_WECHAT_SECRET not in str(failure.value)
    assert len(attempts) == 2


async def test_unreachable_wechat_is_unavailable(wechat_client_factory: ClientFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(WeChatUnavailableError):
        await wechat_client_factory(base_url=f"http://127.0.0.1:{port}").code2session("login-code-1")


# -- phone number and the stable token -------------------------------------------------------


async def test_phone_number_with_a_cached_token(
    wechat_peer: ServedWeChatPeer, wechat_client_factory: ClientFactory, token_cache: Redis | None
) -> None:
    client = wechat_client_factory(redis=token_cache)
    phones = []
    for index in range(3):
        wechat_peer.register_phone_code(f"phone-code-{index}", f"1380013800{index}")
        phones.append(await client.get_phone_number(f"phone-code-{index}"))

    assert phones[0] == WeChatPhone("13800138000", "13800138000", "86")
    assert [phone.pure_phone_number for phone in phones] == ["13800138000", "13800138001", "13800138002"]
    assert wechat_peer.tokens_issued == 1
    assert wechat_peer.stable_token_calls == 1


async def test_invalid_phone_code(
    wechat_peer: ServedWeChatPeer, wechat_client_factory: ClientFactory, token_cache: Redis | None
) -> None:
    with pytest.raises(WeChatCodeInvalidError):
        await wechat_client_factory(redis=token_cache).get_phone_number("never-registered")


async def test_token_is_shared_through_redis_for_expires_in_minus_300(
    wechat_peer: ServedWeChatPeer,
    wechat_client_factory: ClientFactory,
    wechat_redis: Redis,
    wechat_cache_prefix: str,
) -> None:
    wechat_peer.register_phone_code("phone-code-1", "13800138000")
    wechat_peer.register_phone_code("phone-code-2", "13900139000")

    await wechat_client_factory(redis=wechat_redis).get_phone_number("phone-code-1")
    # A second process: a separate client over the same Redis.
    await wechat_client_factory(redis=wechat_redis).get_phone_number("phone-code-2")

    assert wechat_peer.stable_token_calls == 1
    cached = await wechat_redis.get(_token_key(wechat_cache_prefix))
    assert isinstance(cached, bytes)
    assert cached.decode() == wechat_peer.current_token
    assert 6890 < await wechat_redis.ttl(_token_key(wechat_cache_prefix)) <= 6900


async def test_revoked_token_is_refreshed_in_normal_mode_and_retried(
    wechat_peer: ServedWeChatPeer, wechat_client_factory: ClientFactory, token_cache: Redis | None
) -> None:
    client = wechat_client_factory(redis=token_cache)
    wechat_peer.register_phone_code("phone-code-1", "13800138000")
    await client.get_phone_number("phone-code-1")
    replacement = await _force_refresh_elsewhere(wechat_peer)
    wechat_peer.register_phone_code("phone-code-2", "13900139000")

    phone = await client.get_phone_number("phone-code-2")

    assert phone.pure_phone_number == "13900139000"
    # One fetch, the other party's force refresh, one normal-mode refresh that returned the
    # replacement rather than minting (or force-minting) another token.
    assert wechat_peer.stable_token_calls == 3
    assert wechat_peer.tokens_issued == 2
    assert await client.access_token() == replacement
    assert wechat_peer.phone_number_calls == 3


async def test_expired_token_is_refreshed_and_retried(
    wechat_peer: ServedWeChatPeer,
    wechat_client_factory: ClientFactory,
    token_cache: Redis | None,
    peer_clock: PeerClock,
) -> None:
    client = wechat_client_factory(redis=token_cache)
    old = await client.access_token()
    peer_clock.advance(7200)
    wechat_peer.register_phone_code("phone-code-1", "13800138000")

    phone = await client.get_phone_number("phone-code-1")

    assert phone.pure_phone_number == "13800138000"
    assert wechat_peer.tokens_issued == 2
    assert await client.access_token() != old


async def test_token_rejected_again_after_refresh_is_unavailable(
    wechat_client_factory: ClientFactory,
) -> None:
    token_fetches: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == STABLE_TOKEN_PATH:
            assert json.loads(request.content)["force_refresh"] is False
            token_fetches.append(1)
            return httpx.Response(200, json={"access_token": f"test-token-{len(token_fetches)}", "expires_in": 7200})
        return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})

    async with _mock_http(handler) as http:
        with pytest.raises(WeChatUnavailableError) as failure:
            await wechat_client_factory(http=http).get_phone_number("phone-code-1")

    assert failure.value.errcode == 40001
    assert len(token_fetches) == 2


async def test_single_flight_under_ten_concurrent_callers(
    wechat_peer: ServedWeChatPeer, wechat_client_factory: ClientFactory, token_cache: Redis | None
) -> None:
    client = wechat_client_factory(redis=token_cache)
    for index in range(10):
        wechat_peer.register_phone_code(f"phone-code-{index}", f"1380013800{index}")

    phones = await asyncio.gather(*(client.get_phone_number(f"phone-code-{index}") for index in range(10)))

    assert len({phone.pure_phone_number for phone in phones}) == 10
    assert wechat_peer.stable_token_calls == 1


async def test_single_flight_across_processes_sharing_redis(
    wechat_peer: ServedWeChatPeer, wechat_client_factory: ClientFactory, wechat_redis: Redis
) -> None:
    clients = [wechat_client_factory(redis=wechat_redis) for _ in range(2)]
    for index in range(10):
        wechat_peer.register_phone_code(f"phone-code-{index}", f"1380013800{index}")

    await asyncio.gather(
        *(clients[index % 2].get_phone_number(f"phone-code-{index}") for index in range(10)),
    )

    assert wechat_peer.stable_token_calls == 1


async def test_waits_for_the_process_holding_the_refresh_lock(
    wechat_peer: ServedWeChatPeer,
    wechat_client_factory: ClientFactory,
    wechat_redis: Redis,
    wechat_cache_prefix: str,
) -> None:
    key = _token_key(wechat_cache_prefix)
    await wechat_redis.set(f"{key}:lock", "other-process", px=10_000)
    client = wechat_client_factory(redis=wechat_redis)

    waiting = asyncio.create_task(client.access_token())
    await wechat_redis.set(key, "test-token-from-other-process", ex=600)
    token = await waiting

    # Whether the client saw the token at once or after waiting, it never called WeChat itself.
    assert token == "test-token-from-other-process"
    assert wechat_peer.stable_token_calls == 0


async def test_refresh_lock_of_a_dead_process_expires(
    wechat_peer: ServedWeChatPeer,
    wechat_client_factory: ClientFactory,
    wechat_redis: Redis,
    wechat_cache_prefix: str,
) -> None:
    await wechat_redis.set(f"{_token_key(wechat_cache_prefix)}:lock", "dead-process", px=200)

    token = await wechat_client_factory(redis=wechat_redis).access_token()

    assert token == wechat_peer.current_token
    assert wechat_peer.stable_token_calls == 1
