"""Is a service answering at host:port?

Each probe speaks the opening of the service's own protocol, so that a port held by some other
program is told apart from the service, and a server that is still starting is told apart from a
ready one. A bare TCP connect would tell neither.
"""

from __future__ import annotations

import socket
import struct
from enum import Enum

TIMEOUT_SECONDS = 2.0
# PostgreSQL's authentication requests: ok, cleartext, MD5, GSS, GSS continue, SSPI, SASL, SASL continue, SASL final.
_POSTGRES_AUTH_CODES = frozenset({0, 3, 5, 7, 8, 9, 10, 11, 12})
_POSTGRES_PROTOCOL_3 = 196608
_POSTGRES_STARTING = b"57P03"  # cannot_connect_now: starting up, in recovery


class Probe(Enum):
    READY = "ready"  # the service answers and takes connections
    STARTING = "starting"  # the service answers but does not take connections yet
    OTHER = "other"  # something else holds the port
    FREE = "free"  # nothing listens there


def port_is_free(port: int) -> bool:
    """Whether a server of ours could bind 127.0.0.1:``port`` now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _connect(host: str, port: int) -> socket.socket | None:
    try:
        return socket.create_connection((host, port), timeout=TIMEOUT_SECONDS)
    except OSError:
        return None


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def probe_redis(host: str, port: int) -> Probe:
    """Send an inline PING. "+PONG" is Redis; so is any error reply (NOAUTH, say: the credentials are
    the URL's business, not the set-up's), except LOADING, which Redis answers while it starts."""
    sock = _connect(host, port)
    if sock is None:
        return Probe.FREE
    with sock:
        try:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(128)
        except OSError:
            return Probe.OTHER
    if reply.startswith(b"-LOADING"):
        return Probe.STARTING
    if reply.startswith((b"+PONG", b"-")):
        return Probe.READY
    return Probe.OTHER


def probe_mariadb(host: str, port: int) -> Probe:
    """MariaDB speaks first: a handshake packet (protocol version 10), or an error packet (0xff) when
    it refuses this client (too many connections, host blocked) — either way MariaDB is answering.
    It opens its port only once its storage engines are up, so a handshake means ready."""
    sock = _connect(host, port)
    if sock is None:
        return Probe.FREE
    with sock:
        try:
            header = _read_exact(sock, 4)
            first = _read_exact(sock, 1)
        except OSError:
            return Probe.OTHER
    is_packet = len(header) == 4 and int.from_bytes(header[:3], "little") > 0 and header[3] == 0
    return Probe.READY if is_packet and first in (b"\x0a", b"\xff") else Probe.OTHER


def probe_postgres(host: str, port: int, user: str) -> Probe:
    """Send a startup message as ``user`` and read the first answer, as pg_isready does: a request
    to authenticate, or any error but "the database system is starting up" (57P03), is a server
    that takes connections."""
    sock = _connect(host, port)
    if sock is None:
        return Probe.FREE
    params = b"user\x00" + user.encode() + b"\x00\x00"
    with sock:
        try:
            sock.sendall(struct.pack("!ii", 8 + len(params), _POSTGRES_PROTOCOL_3) + params)
            head = _read_exact(sock, 5)
            if len(head) < 5:
                return Probe.OTHER
            tag, length = head[:1], struct.unpack("!i", head[1:])[0]
            if tag not in (b"R", b"E") or not 8 <= length <= 8192:
                return Probe.OTHER
            body = _read_exact(sock, length - 4)
            if tag == b"R" and body[:4] == b"\x00\x00\x00\x00":
                sock.sendall(b"X\x00\x00\x00\x04")  # Terminate: a polite goodbye, so the server logs no lost client
        except OSError:
            return Probe.OTHER
    return _postgres_answer(tag, body)


def _postgres_answer(tag: bytes, body: bytes) -> Probe:
    if tag == b"R":
        code = struct.unpack("!i", body[:4])[0] if len(body) >= 4 else -1
        return Probe.READY if code in _POSTGRES_AUTH_CODES else Probe.OTHER
    fields = {field[:1]: field[1:] for field in body.split(b"\x00") if field}
    if b"C" not in fields:
        return Probe.OTHER
    return Probe.STARTING if fields[b"C"] == _POSTGRES_STARTING else Probe.READY
