"""The nginx site in front of `wardrobe serve --workers N` (`wardrobe nginx-config`).

Rendered from ``nginx.conf.j2`` with this deployment's processes, ports and body caps, so nginx and
the API never disagree about them. deploy/nginx/wardrobe.conf is the rendering for two processes
with the default settings.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from wardrobe.core.errors import ErrorCode
from wardrobe.modules.storage.backend import OBJECTS_PATH
from wardrobe.realtime.hub import RealtimeHub
from wardrobe.realtime.nodes import node_name
from wardrobe.serving.supervisor import socketio_ports
from wardrobe.settings import Settings

DEFAULT_ACCESS_LOG = "/var/log/nginx/wardrobe.access.log"
# Beyond the longest Engine.IO wait, so nginx never cuts a poll or an idle websocket the server
# still considers alive.
TIMEOUT_MARGIN_SECONDS = 15


@dataclass(frozen=True)
class Node:
    name: str
    port: int


@dataclass(frozen=True)
class Site:
    workers: int
    listen: str
    server_name: str
    api_host: str
    api_port: int
    max_body_bytes: int
    max_upload_bytes: int
    engineio_wait: int  # ping interval + ping timeout, seconds
    access_log: str = DEFAULT_ACCESS_LOG
    nodes: tuple[Node, ...] = field(default=())
    command_args: str = ""  # how it was rendered, for the file's first lines


def _upstream_host(host: str) -> str:
    """Where nginx reaches the API: a wildcard bind address means this machine."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - reading the bind address, not binding
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        is_v6 = isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return host  # a name
    return f"[{host}]" if is_v6 else host


def engineio_wait_seconds(settings: Settings) -> int:
    """The longest an Engine.IO long-poll or an idle websocket waits, as the API's hub configures it."""
    eio = RealtimeHub(settings.model_copy(update={"redis_url": ""})).sio.eio
    return int(eio.ping_interval + eio.ping_timeout)


def site(
    settings: Settings,
    *,
    workers: int,
    listen: str = "80",
    server_name: str = "_",
    api_host: str | None = None,
    api_port: int | None = None,
    socketio_port_base: int | None = None,
    access_log: str = DEFAULT_ACCESS_LOG,
    command_args: str = "",
) -> Site:
    """The site for ``workers`` processes of `wardrobe serve` with ``settings`` (and the same
    ``--port``/``--socketio-port-base`` the processes are started with)."""
    port = api_port or settings.port
    base = settings.socketio_port_base if socketio_port_base is None else socketio_port_base
    nodes: tuple[Node, ...] = ()
    if workers > 1:
        ports = socketio_ports(port, base, workers)
        nodes = tuple(Node(node_name(i), p) for i, p in enumerate(ports))
    return Site(
        workers=workers,
        listen=listen,
        server_name=server_name,
        api_host=_upstream_host(api_host if api_host is not None else settings.host),
        api_port=port,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        engineio_wait=engineio_wait_seconds(settings),
        access_log=access_log,
        nodes=nodes,
        command_args=command_args,
    )


def render(config: Site) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - an nginx configuration, not HTML
    )
    too_large = ErrorCode.PAYLOAD_TOO_LARGE
    return environment.get_template("nginx.conf.j2").render(
        **{name: getattr(config, name) for name in config.__dataclass_fields__},
        read_timeout=config.engineio_wait + TIMEOUT_MARGIN_SECONDS,
        objects_path=OBJECTS_PATH,
        too_large_code=too_large.name,
        too_large_zh=too_large.message("zh"),
        too_large_en=too_large.message("en"),
    )
