"""SafeFetcher: vendor output downloads reach the public internet only, bounded in size and time.

The SSRF tests point downloads at canary listeners on 127.0.0.1 and ::1 in every spelling we know
of, directly and through redirects, and then prove the canaries were never connected to.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tests.modules.providers.servers import Canary, Exchange, RawHTTPServer, canary, raw_http_server
from tests.peers.server import PeerServer
from wardrobe.modules.providers.base import ProviderError
from wardrobe.modules.providers.fetch import SafeFetcher, classify_address, system_resolver

LIMIT = 1_000_000


class FakeDNS:
    """A resolver with fixed answers for made-up names (the system one for anything else); counts
    lookups, so a test can tell the fetcher resolved once and never again."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if host in self.answers:
            return self.answers[host]
        return await system_resolver(host, port)


async def refused(fetcher: SafeFetcher, url: str, **kwargs: float) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await fetcher.download(
            url, max_bytes=int(kwargs.get("max_bytes", LIMIT)), timeout_seconds=kwargs.get("timeout_seconds", 10.0)
        )
    return info.value


# --- the classifier ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "metadata"),
        ("169.254.0.23", "metadata"),
        ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.1.1", "link_local"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.255", "cgnat"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address classified, not bound
        ("0.1.2.3", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "reserved"),
        ("198.18.0.1", "reserved"),
        ("192.0.0.170", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link_local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("::7f00:1", "ipv4_compatible"),
        ("::ffff:0:7f00:1", "not_global"),  # IPv4-translated: caught by the is_global net
        ("::a00:1", "ipv4_compatible"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
        ("64:ff9b:1::1", "nat64_local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "teredo"),  # Teredo of 127.0.0.1
        ("2001:db8::1", "reserved"),
        ("100::1", "reserved"),
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    assert classify_address(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses(address: str) -> None:
    assert classify_address(ipaddress.ip_address(address)) is None


# --- the SSRF canary ------------------------------------------------------------------------


@pytest.fixture
async def canary4() -> AsyncIterator[Canary]:
    async with canary("127.0.0.1") as listener:
        yield listener


@pytest.fixture
async def canary6() -> AsyncIterator[Canary]:
    async with canary("::1") as listener:
        yield listener


def canary_urls(c4: Canary, c6: Canary) -> list[tuple[str, str]]:
    """(url, expected code) for every way we know to spell "this machine"."""
    p, p6 = c4.port, c6.port
    forbidden, bad = "output_forbidden_address", "output_bad_url"
    return [
        (f"http://127.0.0.1:{p}/x.png", forbidden),
        (f"http://127.0.0.1.:{p}/x.png", forbidden),
        (f"http://localhost:{p}/x.png", forbidden),  # the system resolver: 127.0.0.1 and ::1
        (f"http://LOCALHOST.:{p}/x.png", forbidden),
        (f"http://2130706433:{p}/", forbidden),  # decimal
        (f"http://0x7f000001:{p}/", forbidden),  # hex
        (f"http://0x7f.1:{p}/", forbidden),
        (f"http://127.1:{p}/", forbidden),
        (f"http://017700000001:{p}/", forbidden),  # octal
        (f"http://0177.0.0.1:{p}/", bad),  # httpx itself refuses this one as a malformed IPv4
        (f"http://[::ffff:127.0.0.1]:{p}/", forbidden),
        (f"http://[::ffff:7f00:1]:{p}/", forbidden),
        (f"http://[0:0:0:0:0:ffff:7f00:1]:{p}/", forbidden),
        (f"http://[::127.0.0.1]:{p}/", forbidden),
        (f"http://[64:ff9b::7f00:1]:{p}/", forbidden),
        (f"http://[2002:7f00:1::]:{p}/", forbidden),
        (f"http://0.0.0.0:{p}/", forbidden),  # Linux connects 0.0.0.0 to this host
        (f"http://[::]:{p6}/", forbidden),
        (f"http://[::1]:{p6}/", forbidden),
        (f"http://[fe80::1%25lo]:{p6}/", forbidden),
        (f"http://cdn.vendor.test:{p}/x.png", forbidden),  # resolves to 127.0.0.1
        (f"http://mixed.vendor.test:{p}/x.png", forbidden),  # one public, one loopback address
        (f"http://v6.vendor.test:{p6}/x.png", forbidden),  # resolves to ::1
        (f"http://mapped.vendor.test:{p}/x.png", forbidden),  # resolves to ::ffff:127.0.0.1
        (f"http://user:pw@127.0.0.1:{p}/", bad),
        (f"http://cdn.example.com@127.0.0.1:{p}/", bad),
        (f"ftp://127.0.0.1:{p}/", bad),
        ("file:///etc/passwd", bad),
        (f"http://127%2e0.0.1:{p}/", bad),
    ]


def canary_dns() -> FakeDNS:
    return FakeDNS(
        {
            "cdn.vendor.test": ["127.0.0.1"],
            "mixed.vendor.test": ["93.184.216.34", "127.0.0.1"],
            "v6.vendor.test": ["::1"],
            "mapped.vendor.test": ["::ffff:127.0.0.1"],
        }
    )


async def test_downloads_never_reach_the_canary(canary4: Canary, canary6: Canary) -> None:
    fetcher = SafeFetcher(resolver=canary_dns())
    outcomes = {url: (await refused(fetcher, url)) for url, _ in canary_urls(canary4, canary6)}
    assert {url: (e.code, e.retryable) for url, e in outcomes.items()} == {
        url: (code, False) for url, code in canary_urls(canary4, canary6)
    }
    assert await canary4.confirm_count() == 0
    assert await canary6.confirm_count() == 0


async def test_redirects_to_the_canary_are_refused(canary4: Canary, canary6: Canary) -> None:
    urls = canary_urls(canary4, canary6)

    async def redirect(exchange: Exchange) -> None:
        target, _ = urls[int(exchange.path.removeprefix("/to/"))]
        await exchange.respond(302, headers={"Location": target})

    async with raw_http_server(redirect) as server:
        # The redirecting server is allowlisted; nothing it points at inherits that.
        fetcher = SafeFetcher(allow_private=[server.netloc], resolver=canary_dns())
        for i, (url, code) in enumerate(urls):
            error = await refused(fetcher, f"{server.url}/to/{i}")
            assert (url, error.code) == (url, code)

        # Relative and scheme-relative Locations land on the canary too, and are refused.
        async def relative(exchange: Exchange) -> None:
            await exchange.respond(301, headers={"Location": f"//127.0.0.1:{canary4.port}/x"})

        server.handler = relative
        assert (await refused(fetcher, f"{server.url}/")).code == "output_forbidden_address"
        assert len(server.requests) == len(urls) + 1
    assert await canary4.confirm_count() == 0
    assert await canary6.confirm_count() == 0


async def test_the_allowlist_is_exact_host_and_port(canary4: Canary) -> None:
    fetcher = SafeFetcher(allow_private=[f"127.0.0.1:{canary4.port + 1}", f"localhost:{canary4.port}"])
    for url in (
        f"http://127.0.0.1:{canary4.port}/",
        f"http://[::ffff:127.0.0.1]:{canary4.port}/",
        f"http://2130706433:{canary4.port}/",
    ):
        assert (await refused(fetcher, url)).code == "output_forbidden_address"
    assert await canary4.confirm_count() == 0
    with pytest.raises(ValueError, match="explicit port"):
        SafeFetcher(allow_private=["10.0.0.1"])


# --- an allowlisted local vendor ------------------------------------------------------------


def vendor_app() -> Starlette:
    async def image(request: Request) -> Response:
        return Response(b"\x89PNG fake", media_type="image/png; charset=binary")

    async def hop(request: Request) -> Response:
        n = int(request.path_params["n"])
        return RedirectResponse("/image.png" if n == 0 else f"/hop/{n - 1}", status_code=307)

    async def status(request: Request) -> Response:
        return Response(b"no", status_code=int(request.path_params["code"]))

    return Starlette(routes=[Route("/image.png", image), Route("/hop/{n}", hop), Route("/status/{code}", status)])


@pytest.fixture(scope="module")
def vendor() -> Iterator[PeerServer]:
    with PeerServer(vendor_app()) as server:
        yield server


async def test_an_allowlisted_server_is_downloaded_from(vendor: PeerServer) -> None:
    fetcher = SafeFetcher(allow_private=[vendor.host_port])
    result = await fetcher.download(f"{vendor.base_url}/image.png", max_bytes=LIMIT, timeout_seconds=10)
    assert (result.data, result.content_type) == (b"\x89PNG fake", "image/png")
    assert result.final_url == f"{vendor.base_url}/image.png"


async def test_redirects_are_followed_up_to_the_limit(vendor: PeerServer) -> None:
    fetcher = SafeFetcher(allow_private=[vendor.host_port], max_redirects=3)
    result = await fetcher.download(f"{vendor.base_url}/hop/2", max_bytes=LIMIT, timeout_seconds=10)
    assert result.data == b"\x89PNG fake"
    assert result.final_url == f"{vendor.base_url}/image.png"
    error = await refused(fetcher, f"{vendor.base_url}/hop/3")  # four redirects
    assert (error.code, error.retryable) == ("output_too_many_redirects", False)


async def test_the_vetted_address_is_the_one_connected_to(vendor: PeerServer) -> None:
    # "cdn.vendor.test" exists only in this resolver: the download can work only if the fetcher
    # connects to the address it vetted, without asking anyone else, and still says the name.
    dns = FakeDNS({"cdn.vendor.test": ["127.0.0.1"]})
    fetcher = SafeFetcher(allow_private=[f"cdn.vendor.test:{vendor.port}"], resolver=dns)
    url = f"http://cdn.vendor.test:{vendor.port}/hop/1"
    result = await fetcher.download(url, max_bytes=LIMIT, timeout_seconds=10)
    assert result.data == b"\x89PNG fake"
    assert dns.lookups == ["cdn.vendor.test"] * 3  # once per hop, never twice for one connection


async def test_host_header_is_the_url_host() -> None:
    async def answer(exchange: Exchange) -> None:
        await exchange.respond(200, b"ok")

    async with raw_http_server(answer) as server:
        dns = FakeDNS({"cdn.vendor.test": ["127.0.0.1"]})
        fetcher = SafeFetcher(allow_private=[f"cdn.vendor.test:{server.port}"], resolver=dns)
        await fetcher.download(f"http://cdn.vendor.test:{server.port}/a?b=1", max_bytes=LIMIT, timeout_seconds=10)
        (request,) = server.requests
        assert request.header("host") == f"cdn.vendor.test:{server.port}"
        assert request.path == "/a?b=1"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (404, ("output_not_available", False)),
        (403, ("output_not_available", False)),
        (503, ("output_unreachable", True)),
        (429, ("output_unreachable", True)),
    ],
)
async def test_http_errors_are_classified(vendor: PeerServer, code: int, expected: tuple[str, bool]) -> None:
    fetcher = SafeFetcher(allow_private=[vendor.host_port])
    error = await refused(fetcher, f"{vendor.base_url}/status/{code}")
    assert (error.code, error.retryable) == expected


async def test_unreachable_hosts_are_retryable() -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def nxdomain(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fetcher = SafeFetcher(allow_private=[f"127.0.0.1:{port}", "nowhere.invalid:80"], resolver=nxdomain)
    for url in (f"http://127.0.0.1:{port}/", "http://nowhere.invalid/"):
        error = await refused(fetcher, url)
        assert (error.code, error.retryable) == ("output_unreachable", True)


# --- size and time bounds ------------------------------------------------------------------


async def test_an_endless_body_under_a_lying_content_length_is_cut_off() -> None:
    chunk = b"x" * 65536
    sent: list[int] = []

    async def endless(exchange: Exchange) -> None:
        # Content-Length claims 16 bytes; chunked framing (which wins, RFC 9112 §6.3) sends forever.
        exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nTransfer-Encoding: chunked\r\n\r\n")
        total = 0
        while True:  # ends only when the client hangs up (OSError, recorded by the server)
            exchange.writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await exchange.writer.drain()
            total += len(chunk)
            sent[:] = [total]

    async with raw_http_server(endless) as server:
        fetcher = SafeFetcher(allow_private=[server.netloc])
        error = await refused(fetcher, f"{server.url}/", max_bytes=300_000, timeout_seconds=30)
        assert (error.code, error.retryable) == ("output_too_large", False)
        await asyncio.wait_for(server.finished.wait(), 10)
        # The server stopped because the connection went away, not because it ran out of body.
        assert len(server.errors) == 1
        assert isinstance(server.errors[0], ConnectionError)
        assert sent  # and it did get to send: the refusal came from reading, not from the headers


async def test_a_declared_oversize_body_is_refused_before_reading() -> None:
    async def huge(exchange: Exchange) -> None:
        exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n")
        await exchange.writer.drain()
        await server.release.wait()  # never sends the body: reading it would time out instead

    async with raw_http_server(huge) as server:
        fetcher = SafeFetcher(allow_private=[server.netloc])
        error = await refused(fetcher, f"{server.url}/", max_bytes=1000, timeout_seconds=30)
        assert error.code == "output_too_large"


@pytest.mark.parametrize("stall_after", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"])
async def test_a_stalled_server_costs_bounded_time(stall_after: bytes) -> None:
    async def stall(exchange: Exchange) -> None:
        exchange.writer.write(stall_after)
        await exchange.writer.drain()
        await server.release.wait()  # set when the test ends

    async with raw_http_server(stall) as server:
        fetcher = SafeFetcher(allow_private=[server.netloc])
        error = await refused(fetcher, f"{server.url}/", timeout_seconds=0.5)
        assert (error.code, error.retryable) == ("output_timeout", True)
        assert not server.release.is_set()  # it timed out on its own, the server never let go


async def test_a_slow_resolver_counts_against_the_deadline() -> None:
    never = asyncio.Event()

    async def hanging_dns(host: str, port: int) -> Sequence[str]:
        await never.wait()
        return []

    fetcher = SafeFetcher(resolver=hanging_dns)
    error = await refused(fetcher, "http://slow.vendor.test/", timeout_seconds=0.3)
    assert error.code == "output_timeout"
    never.set()


# --- TLS: SNI and certificate checks against the host name -----------------------------------


def self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_tls_uses_the_host_name_for_sni_and_certificate(tmp_path: Path) -> None:
    cert_pem, key_pem = self_signed("cdn.vendor.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: sni.append(name)

    async def answer(exchange: Exchange) -> None:
        await exchange.respond(200, b"secret image")

    server = RawHTTPServer(answer)
    server._server = await asyncio.start_server(server._on_connect, "127.0.0.1", 0, ssl=server_ctx)
    try:
        port = server.port
        client_ctx = ssl.create_default_context(cadata=cert_pem.decode())
        dns = FakeDNS({"cdn.vendor.test": ["127.0.0.1"], "other.vendor.test": ["127.0.0.1"]})
        fetcher = SafeFetcher(
            allow_private=[f"cdn.vendor.test:{port}", f"other.vendor.test:{port}", f"127.0.0.1:{port}"],
            resolver=dns,
            ssl_context=client_ctx,
        )
        result = await fetcher.download(f"https://cdn.vendor.test:{port}/", max_bytes=LIMIT, timeout_seconds=10)
        assert result.data == b"secret image"
        assert sni == ["cdn.vendor.test"]
        # Same server, same certificate, but the name in the URL is not the one certified: the
        # connection to the pinned address must still check the certificate against the name.
        for url in (f"https://other.vendor.test:{port}/", f"https://127.0.0.1:{port}/"):
            error = await refused(fetcher, url)
            assert (error.code, error.retryable) == ("output_unreachable", True)
        assert len(server.requests) == 1
    finally:
        server._server.close()
        await server._server.wait_closed()
