"""store_outputs: vendor outputs become our objects under results/ (or tmp/), checked like uploads,
stored once however often the vendor tells us about them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.modules.providers.servers import Exchange, RawHTTPServer, canary, raw_http_server
from tests.modules.storage.samples import noise, png_bomb, png_claiming, truncated
from wardrobe.modules.providers.base import ProviderError
from wardrobe.modules.providers.fetch import SafeFetcher
from wardrobe.modules.providers.outputs import OutputLimits, OutputTarget, output_key_stem, store_outputs
from wardrobe.modules.storage.backend import LocalObjectStorage

PNG = noise(48, 32, "PNG")
JPEG = noise(40, 30, "JPEG", seed=3)
WEBP = noise(20, 20, "WEBP", seed=5)
# A date that is not today, so keys visibly come from the target and not from the clock.
AT = datetime(2026, 11, 5, 23, 59, 59, tzinfo=UTC)
TARGET = OutputTarget(user_id=7, task_id="tk_8f3a2c", step_id="try_on", attempt=1, at=AT)
LIMITS = OutputLimits(max_bytes=2_000_000, timeout_seconds=10, max_pixels=1_000_000)


class Vendor:
    """Serves fixed files by path, with whatever Content-Type the vendor's CDN would claim."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {
            "/a.png": (PNG, "image/png"),
            "/b": (JPEG, "application/octet-stream"),  # CDNs label things badly: the bytes decide
            "/c.png": (WEBP, "image/png"),
            "/text": (b"<html>not an image</html>", "image/png"),
            "/bomb.png": (png_bomb(4000, 4000), "image/png"),
            "/claims.png": (png_claiming(50_000, 50_000), "image/png"),
            "/cut.png": (truncated(PNG), "image/png"),
        }
        self.server: RawHTTPServer | None = None

    async def answer(self, exchange: Exchange) -> None:
        body, content_type = self.files.get(exchange.path, (b"", ""))
        if not body:
            await exchange.respond(404)
            return
        await exchange.respond(200, body, {"Content-Type": content_type})

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"{self.server.url}{path}"

    def hits(self) -> list[str]:
        assert self.server is not None
        return [request.path for request in self.server.requests]


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    peer = Vendor()
    async with raw_http_server(peer.answer) as server:
        peer.server = server
        yield peer


@pytest.fixture
def storage(tmp_path: Path) -> LocalObjectStorage:
    return LocalObjectStorage(tmp_path, "", b"k" * 32)


def fetcher_for(vendor: Vendor) -> SafeFetcher:
    assert vendor.server is not None
    return SafeFetcher(allow_private=[vendor.server.netloc])


async def all_keys(storage: LocalObjectStorage) -> list[str]:
    return [info.key for prefix in ("results/", "tmp/") for info in await storage.list(prefix)]


async def test_outputs_are_stored_under_results(vendor: Vendor, storage: LocalObjectStorage) -> None:
    urls = [vendor.url("/a.png"), vendor.url("/b"), vendor.url("/c.png")]
    stored = await store_outputs(urls, TARGET, fetcher=fetcher_for(vendor), storage=storage, limits=LIMITS)
    assert [(s.key, s.content_type, s.size, s.reused) for s in stored] == [
        ("results/7/2026/11/tk_8f3a2c-try_on-1-0.png", "image/png", len(PNG), False),
        ("results/7/2026/11/tk_8f3a2c-try_on-1-1.jpg", "image/jpeg", len(JPEG), False),
        ("results/7/2026/11/tk_8f3a2c-try_on-1-2.webp", "image/webp", len(WEBP), False),
    ]
    assert [await storage.get(s.key) for s in stored] == [PNG, JPEG, WEBP]
    heads = [await storage.head(s.key) for s in stored]
    assert [h.content_type if h else None for h in heads] == ["image/png", "image/jpeg", "image/webp"]


async def test_intermediates_go_under_tmp(vendor: Vendor, storage: LocalObjectStorage) -> None:
    target = replace(TARGET, intermediate=True)
    (stored,) = await store_outputs(
        [vendor.url("/a.png")], target, fetcher=fetcher_for(vendor), storage=storage, limits=LIMITS
    )
    assert stored.key == "tmp/2026/11/05/tk_8f3a2c-try_on-1-0.png"
    assert await all_keys(storage) == [stored.key]


async def test_a_repeated_delivery_downloads_nothing(vendor: Vendor, storage: LocalObjectStorage) -> None:
    urls = [vendor.url("/a.png"), vendor.url("/b")]
    fetcher = fetcher_for(vendor)
    first = await store_outputs(urls, TARGET, fetcher=fetcher, storage=storage, limits=LIMITS)
    # A duplicate webhook or a retried poll: the vendor may even hand out fresh signed URLs.
    again = await store_outputs(
        [vendor.url("/a.png?sig=2"), vendor.url("/b?sig=2")], TARGET, fetcher=fetcher, storage=storage, limits=LIMITS
    )
    assert [s.key for s in again] == [s.key for s in first]
    assert [(s.reused, s.size, s.content_type) for s in again] == [
        (True, len(PNG), "image/png"),
        (True, len(JPEG), "image/jpeg"),
    ]
    assert sorted(vendor.hits()) == ["/a.png", "/b"]
    assert sorted(await all_keys(storage)) == sorted(s.key for s in first)


async def test_racing_deliveries_store_each_output_once(vendor: Vendor, storage: LocalObjectStorage) -> None:
    urls = [vendor.url("/a.png"), vendor.url("/b")]
    fetcher = fetcher_for(vendor)
    results = await asyncio.gather(
        *(store_outputs(urls, TARGET, fetcher=fetcher, storage=storage, limits=LIMITS) for _ in range(4))
    )
    keys = [[s.key for s in stored] for stored in results]
    assert keys == [keys[0]] * 4
    assert sorted(await all_keys(storage)) == sorted(keys[0])
    assert [await storage.get(k) for k in keys[0]] == [PNG, JPEG]


async def test_a_new_attempt_gets_new_keys(vendor: Vendor, storage: LocalObjectStorage) -> None:
    fetcher = fetcher_for(vendor)
    (first,) = await store_outputs([vendor.url("/a.png")], TARGET, fetcher=fetcher, storage=storage, limits=LIMITS)
    (second,) = await store_outputs(
        [vendor.url("/b")], replace(TARGET, attempt=2), fetcher=fetcher, storage=storage, limits=LIMITS
    )
    assert (first.key, second.key) == (
        "results/7/2026/11/tk_8f3a2c-try_on-1-0.png",
        "results/7/2026/11/tk_8f3a2c-try_on-2-0.jpg",
    )
    assert (second.reused, await storage.get(second.key)) == (False, JPEG)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/text", "output_not_image"),
        ("/bomb.png", "output_too_many_pixels"),
        ("/claims.png", "output_too_many_pixels"),
        ("/cut.png", "output_corrupt"),
        ("/missing.png", "output_not_available"),
    ],
)
async def test_bad_outputs_are_refused_and_not_stored(
    vendor: Vendor, storage: LocalObjectStorage, path: str, code: str
) -> None:
    with pytest.raises(ProviderError) as info:
        await store_outputs([vendor.url(path)], TARGET, fetcher=fetcher_for(vendor), storage=storage, limits=LIMITS)
    assert (info.value.code, info.value.retryable) == (code, False)
    assert vendor.hits() == [path]
    assert await all_keys(storage) == []


async def test_oversized_outputs_are_refused(vendor: Vendor, storage: LocalObjectStorage) -> None:
    limits = replace(LIMITS, max_bytes=len(PNG) - 1)
    with pytest.raises(ProviderError) as info:
        await store_outputs([vendor.url("/a.png")], TARGET, fetcher=fetcher_for(vendor), storage=storage, limits=limits)
    assert info.value.code == "output_too_large"
    assert await all_keys(storage) == []


async def test_output_urls_pointing_inside_are_never_fetched(vendor: Vendor, storage: LocalObjectStorage) -> None:
    async with canary("127.0.0.1") as listener:
        urls = [vendor.url("/a.png"), f"http://127.0.0.1:{listener.port}/secret.png"]
        with pytest.raises(ProviderError) as info:
            await store_outputs(urls, TARGET, fetcher=fetcher_for(vendor), storage=storage, limits=LIMITS)
        assert info.value.code == "output_forbidden_address"
        assert await listener.confirm_count() == 0


async def test_too_many_outputs_are_refused(vendor: Vendor, storage: LocalObjectStorage) -> None:
    urls = [vendor.url("/a.png")] * 3
    with pytest.raises(ProviderError) as info:
        await store_outputs(
            urls, TARGET, fetcher=fetcher_for(vendor), storage=storage, limits=replace(LIMITS, max_outputs=2)
        )
    assert info.value.code == "output_too_many"
    assert vendor.hits() == []


def test_ids_that_cannot_be_keys_are_refused() -> None:
    assert output_key_stem(TARGET, 3) == "results/7/2026/11/tk_8f3a2c-try_on-1-3"
    for bad in (replace(TARGET, task_id="../etc"), replace(TARGET, task_id="a/b"), replace(TARGET, step_id="")):
        with pytest.raises(ProviderError) as info:
            output_key_stem(bad, 0)
        assert info.value.code == "output_bad_target"
