"""Downloading vendor outputs without becoming an SSRF proxy.

A vendor hands us URLs to fetch; whoever controls a vendor answer (or a forged callback that slips
through, or a vendor that was itself compromised) controls those URLs. ``SafeFetcher`` makes sure
such a URL can only reach the public internet:

1. The URL is parsed once (``httpx.URL``) and everything after uses that parse: http/https only,
   no userinfo, a syntactically plain host. A host whose last label is numeric ("2130706433",
   "0x7f.1", "127.1") is an IPv4 literal to browsers and to ``inet_aton``, so unless it is a
   canonical dotted quad it is refused outright.
2. The host is resolved once, by us (``loop.getaddrinfo``), and refused if *any* address is not
   public (``classify_address``: loopback, private, link-local and cloud metadata, CGNAT,
   multicast, reserved, and IPv6 forms that embed such an IPv4 address).
3. The TCP connection goes to one of those vetted addresses and nowhere else: ``_PinnedBackend``
   is an httpcore network backend that ignores DNS and only connects to the vetted (host, port).
   The URL keeps its hostname, so httpcore still sends ``Host: <hostname>`` and starts TLS with
   ``server_hostname=<hostname>``: SNI and certificate verification (hostname included) work as
   usual. No second lookup happens, so DNS rebinding between check and connect is impossible.
   (Connecting to ``https://<ip>/`` with an ``sni_hostname`` extension would also verify the
   certificate, but needs the Host header rebuilt by hand and IPv6 literals bracketed; pinning
   the connect keeps the request exactly what the URL says.)
4. Redirects are followed by hand, at most ``max_redirects`` of them, each hop going through
   steps 1–3 again.
5. The body is read as a stream and abandoned past ``max_bytes`` (a declared Content-Length above
   the cap stops us before reading; a smaller or absent one is not believed); the whole download,
   resolution and redirects included, runs under one deadline.

We use httpcore directly rather than ``httpx.AsyncClient``: the client's transport builds its own
connection pool with no way to pass a network backend, and it honours ``HTTP_PROXY`` and friends
from the environment, which would send the request to a proxy that resolves the name again.

The only bypass is ``allow_private``: an explicit list of ``host:port`` pairs (operators' internal
endpoints, the tests' local peers) whose addresses are not classified. Nothing else — no flag,
no environment variable, no hostname suffix — skips the check, and the pinning still applies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import httpcore
import httpx

from wardrobe.modules.providers.base import ProviderError

__all__ = [
    "Downloaded",
    "Resolver",
    "SafeFetcher",
    "classify_address",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

# Stable error codes (ProviderError.code). Retryable: the same URL may work later.
BAD_URL: Final = "output_bad_url"  # not retryable: malformed, not http(s), userinfo
FORBIDDEN_ADDRESS: Final = "output_forbidden_address"  # not retryable: SSRF attempt or misconfiguration
UNREACHABLE: Final = "output_unreachable"  # retryable: DNS, connect, TLS, protocol, 5xx/408/429
TIMEOUT: Final = "output_timeout"  # retryable: the whole download took longer than allowed
TOO_LARGE: Final = "output_too_large"  # not retryable: the body is bigger than the cap
NOT_AVAILABLE: Final = "output_not_available"  # not retryable: 4xx (expired signed URL, 404, …)
TOO_MANY_REDIRECTS: Final = "output_too_many_redirects"  # not retryable

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_STATUSES = frozenset({408, 425, 429})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# What WHATWG and inet_aton read as a number: decimal, octal (leading 0) or hex (0x…).
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Cloud metadata services, named so a refusal says what was being reached. All of them are also
# inside a range refused below; the names are for the logs.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.0.23"),  # Tencent Cloud (metadata.tencentyun.com)
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}

# Checked in order; the first match names the reason. ``is_global`` is consulted last, as a net
# for whatever this list misses — not first, because its answers vary between Python versions
# (3.11 calls ``::7f00:1`` and ``64:ff9b::7f00:1`` global).
_V4_RANGES: tuple[tuple[_V4, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("100.64.0.0/10"), "cgnat"),
    (_V4("169.254.0.0/16"), "link_local"),
    (_V4("192.0.0.0/24"), "reserved"),  # IETF protocol assignments
    (_V4("192.0.2.0/24"), "reserved"),  # documentation
    (_V4("198.51.100.0/24"), "reserved"),
    (_V4("203.0.113.0/24"), "reserved"),
    (_V4("192.88.99.0/24"), "reserved"),  # 6to4 relay anycast
    (_V4("198.18.0.0/15"), "reserved"),  # benchmarking
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # includes 255.255.255.255
)
_V6_RANGES: tuple[tuple[_V6, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("::/96"), "ipv4_compatible"),  # deprecated ::a.b.c.d, some stacks still route it to v4
    (_V6("64:ff9b:1::/48"), "nat64_local"),
    (_V6("100::/64"), "reserved"),  # discard
    (_V6("2001::/32"), "teredo"),  # tunnels to an arbitrary IPv4 client: never a vendor's server
    (_V6("2001:db8::/32"), "reserved"),  # documentation
    (_V6("fc00::/7"), "private"),  # unique local
    (_V6("fe80::/10"), "link_local"),
    (_V6("fec0::/10"), "private"),  # deprecated site-local
    (_V6("ff00::/8"), "multicast"),
)
_NAT64 = _V6("64:ff9b::/96")


def classify_address(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from (a short reason), or None if it is public.

    IPv6 forms that carry an IPv4 address — mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96`` and
    6to4 ``2002::/16`` — are judged by the IPv4 address they lead to.
    """
    if address in _METADATA:
        return "metadata"
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "scoped"
        embedded: ipaddress.IPv4Address | None = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return classify_address(embedded)
        for network6, reason in _V6_RANGES:
            if address in network6:
                return reason
    else:
        for network4, reason in _V4_RANGES:
            if address in network4:
                return reason
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "not_global"
    return None


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The addresses of ``host`` from the system resolver, without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class Downloaded:
    data: bytes
    content_type: str | None
    final_url: str


@dataclass(frozen=True, slots=True)
class _Target:
    url: httpx.URL
    scheme: str
    host: str  # lower case, IDNA-encoded, no trailing dot, IPv6 without brackets
    port: int
    literal: IPAddress | None


def _refuse(code: str, message: str, *, retryable: bool = False) -> ProviderError:
    return ProviderError(code, message, retryable=retryable)


def _parse(raw: str) -> _Target:
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise _refuse(BAD_URL, "malformed URL") from None
    if url.scheme not in _DEFAULT_PORTS:
        raise _refuse(BAD_URL, "only http and https URLs are fetched")
    if url.userinfo:
        raise _refuse(BAD_URL, "URLs with credentials are not fetched")
    port = url.port if url.port is not None else _DEFAULT_PORTS[url.scheme]
    if not 0 < port < 65536:
        raise _refuse(BAD_URL, "invalid port")
    host = url.raw_host.decode("ascii").lower()
    if ":" in host:  # httpx only lets a validated, bracketed IPv6 literal through with a colon
        if "%" in host:
            raise _refuse(FORBIDDEN_ADDRESS, "scoped IPv6 address")
        try:
            return _Target(url, url.scheme, host, port, ipaddress.IPv6Address(host))
        except ValueError:
            raise _refuse(BAD_URL, "malformed IPv6 address") from None
    host = host.removesuffix(".")
    labels = host.split(".")
    if not host or not all(_LABEL.match(label) for label in labels):
        raise _refuse(BAD_URL, "malformed host name")
    if _NUMERIC_LABEL.match(labels[-1]):
        # An IPv4 literal in some spelling. Only the canonical one is believed; "2130706433",
        # "0x7f.1" and "127.1" all mean 127.0.0.1 to someone.
        try:
            literal = ipaddress.IPv4Address(host)
        except ValueError:
            raise _refuse(FORBIDDEN_ADDRESS, "non-canonical IPv4 literal") from None
        return _Target(url, url.scheme, host, port, literal)
    return _Target(url, url.scheme, host, port, None)


def _allow_entry(entry: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) normalised the way ``_parse`` normalises URLs."""
    _, colon, port = entry.rpartition(":")
    if not colon or not port.isdigit():
        raise ValueError(f"allow_private entry {entry!r} needs an explicit port")
    try:
        target = _parse(f"http://{entry}/")
    except ProviderError as exc:
        raise ValueError(f"allow_private entry {entry!r}: {exc.message}") from None
    return target.host, target.port


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the vetted addresses of one (host, port) and refuses any other connection."""

    def __init__(self, host: str, port: int, addresses: Sequence[str]) -> None:
        self._host = host
        self._port = port
        self._addresses = addresses
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (host.lower(), port) != (self._host, self._port):
            raise httpcore.ConnectError("connection to an unvetted origin")
        error: Exception = httpcore.ConnectError("no address")
        for address in self._addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never used for downloads")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class SafeFetcher:
    """Downloads vendor outputs from the public internet only (see the module docstring).

    ``allow_private``: ``host:port`` pairs that may resolve to non-public addresses, e.g.
    ``"10.0.3.7:8080"``, ``"cdn.internal:443"``, ``"[fd00::5]:80"``; matched against the URL's
    host and effective port. ``resolver`` replaces the system resolver (tests, a custom DNS).
    ``ssl_context`` defaults to httpx's (certifi roots, hostname checking on).
    """

    def __init__(
        self,
        *,
        allow_private: Iterable[str] = (),
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        max_redirects: int = 3,
        user_agent: str = "wardrobe-output-fetcher/1",
    ) -> None:
        self._allow_private = frozenset(_allow_entry(entry) for entry in allow_private)
        self._resolve = resolver
        self._ssl_context = ssl_context or httpx.create_ssl_context()
        self._max_redirects = max_redirects
        self._user_agent = user_agent.encode("ascii")

    async def download(self, url: str, *, max_bytes: int, timeout_seconds: float) -> Downloaded:
        """The body of ``url`` (after at most ``max_redirects`` redirects), at most ``max_bytes``
        long, within ``timeout_seconds`` overall. Raises ``ProviderError`` with the codes above."""
        try:
            async with asyncio.timeout(timeout_seconds):
                return await self._follow(url, max_bytes, timeout_seconds)
        except TimeoutError:
            raise _refuse(TIMEOUT, f"download took more than {timeout_seconds}s", retryable=True) from None

    async def post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]], *, timeout_seconds: float) -> int:
        """POST ``body`` to ``url`` under the same rules (a webhook): no redirect is followed (a
        receiver answers where it is registered), the answer's body is not read. Returns the HTTP
        status; raises ``ProviderError`` when the URL or its addresses are refused or unreachable."""
        try:
            async with asyncio.timeout(timeout_seconds):
                target = _parse(url)
                addresses = await self._vetted_addresses(target)
                return await self._post(target, addresses, body, headers, timeout_seconds)
        except TimeoutError:
            raise _refuse(TIMEOUT, f"no answer within {timeout_seconds}s", retryable=True) from None

    async def _post(
        self,
        target: _Target,
        addresses: Sequence[str],
        body: bytes,
        headers: Sequence[tuple[str, str]],
        timeout_seconds: float,
    ) -> int:
        url = target.url
        request_url = httpcore.URL(
            scheme=url.raw_scheme, host=target.host.encode("ascii"), port=target.port, target=url.raw_path
        )
        sent = [
            (b"Host", url.netloc),
            (b"User-Agent", self._user_agent),
            (b"Content-Length", str(len(body)).encode()),
            *((name.encode("ascii"), value.encode("ascii")) for name, value in headers),
        ]
        timeouts = dict.fromkeys(("connect", "read", "write", "pool"), timeout_seconds)
        try:
            async with (
                httpcore.AsyncConnectionPool(
                    ssl_context=self._ssl_context,
                    max_connections=1,
                    retries=0,
                    network_backend=_PinnedBackend(target.host, target.port, addresses),
                ) as pool,
                # Streamed and left unread: whatever a receiver answers with, we take only its status.
                pool.stream(
                    "POST", request_url, headers=sent, content=body, extensions={"timeout": timeouts}
                ) as response,
            ):
                return response.status
        except httpcore.TimeoutException:
            raise _refuse(TIMEOUT, "the server is too slow", retryable=True) from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError, ssl.SSLError) as exc:
            raise _refuse(UNREACHABLE, type(exc).__name__, retryable=True) from None

    async def _follow(self, url: str, max_bytes: int, timeout_seconds: float) -> Downloaded:
        for _ in range(self._max_redirects + 1):
            target = _parse(url)
            addresses = await self._vetted_addresses(target)
            result = await self._get(target, addresses, max_bytes, timeout_seconds)
            if isinstance(result, Downloaded):
                return result
            # A relative Location is resolved against the URL that sent it; the result is parsed
            # and vetted from scratch on the next turn.
            try:
                url = str(target.url.join(result))
            except (httpx.InvalidURL, TypeError, ValueError):
                raise _refuse(BAD_URL, "redirect to a malformed URL") from None
        raise _refuse(TOO_MANY_REDIRECTS, f"more than {self._max_redirects} redirects")

    async def _vetted_addresses(self, target: _Target) -> list[str]:
        """Where to connect for ``target``: every address it resolves to, all of them checked."""
        allowed = (target.host, target.port) in self._allow_private
        if target.literal is not None:
            candidates: list[IPAddress] = [target.literal]
        else:
            try:
                resolved = await self._resolve(target.host, target.port)
                candidates = [ipaddress.ip_address(address) for address in resolved]
            except (OSError, UnicodeError, ValueError):
                raise _refuse(UNREACHABLE, "the host name does not resolve", retryable=True) from None
            if not candidates:
                raise _refuse(UNREACHABLE, "the host name does not resolve", retryable=True)
        out = []
        for address in candidates:
            reason = None if allowed else classify_address(address)
            if reason is not None:
                # One bad address refuses the host: a name that mixes public and internal
                # addresses is an attack, or a misconfiguration we should hear about.
                raise _refuse(FORBIDDEN_ADDRESS, f"{target.host} resolves to a {reason} address")
            # Connect to a mapped address's IPv4 form, which is what it means.
            plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
            out.append(str(plain or address))
        return out

    async def _get(
        self, target: _Target, addresses: Sequence[str], max_bytes: int, timeout_seconds: float
    ) -> Downloaded | str:
        """One request: the download, or the Location to go to next."""
        backend = _PinnedBackend(target.host, target.port, addresses)
        url = target.url
        request_url = httpcore.URL(
            scheme=url.raw_scheme, host=target.host.encode("ascii"), port=target.port, target=url.raw_path
        )
        headers = [
            (b"Host", url.netloc),
            (b"User-Agent", self._user_agent),
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", b"identity"),  # we store bytes as sent; no decompression bombs
        ]
        timeouts = {
            "connect": timeout_seconds,
            "read": timeout_seconds,
            "write": timeout_seconds,
            "pool": timeout_seconds,
        }
        try:
            async with (
                httpcore.AsyncConnectionPool(
                    ssl_context=self._ssl_context, max_connections=1, retries=0, network_backend=backend
                ) as pool,
                pool.stream("GET", request_url, headers=headers, extensions={"timeout": timeouts}) as response,
            ):
                return await self._read(response, str(url), max_bytes)
        except httpcore.TimeoutException:
            raise _refuse(TIMEOUT, "the server is too slow", retryable=True) from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError, ssl.SSLError) as exc:
            raise _refuse(UNREACHABLE, type(exc).__name__, retryable=True) from None

    @staticmethod
    async def _read(response: httpcore.Response, url: str, max_bytes: int) -> Downloaded | str:
        status = response.status
        headers = {name.lower(): value for name, value in response.headers}
        if status in _REDIRECTS:
            location = headers.get(b"location")
            if not location:
                raise _refuse(UNREACHABLE, f"redirect {status} without a location", retryable=True)
            try:
                return location.decode("ascii")
            except UnicodeDecodeError:
                raise _refuse(BAD_URL, "redirect to a malformed URL") from None
        if status >= 500 or status in _RETRYABLE_STATUSES:
            raise _refuse(UNREACHABLE, f"HTTP {status}", retryable=True)
        if not 200 <= status < 300:
            raise _refuse(NOT_AVAILABLE, f"HTTP {status}")
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _refuse(TOO_LARGE, f"declared {int(declared)} bytes, more than {max_bytes}")
        body = bytearray()
        async for chunk in response.aiter_stream():
            body += chunk
            if len(body) > max_bytes:
                # Leaving the stream unread closes the connection: nothing more is received.
                raise _refuse(TOO_LARGE, f"more than {max_bytes} bytes")
        content_type = headers.get(b"content-type")
        return Downloaded(
            data=bytes(body),
            content_type=content_type.decode("latin-1").split(";")[0].strip().lower() if content_type else None,
            final_url=url,
        )
