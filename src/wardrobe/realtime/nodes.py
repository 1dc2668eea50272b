"""Which API process a Socket.IO session belongs to, written into the session id.

Engine.IO keeps a session (its queue of packets, its long-poll waiter) in the memory of the process
that answered the handshake, and every later request of that session (``?sid=``: polls, posts,
the websocket upgrade) must reach that same process. Under ``wardrobe serve --workers N`` each
process has a name (``api0`` … ``api{N-1}``, set by the supervisor in ``WARDROBE_SOCKETIO_NODE``)
and a private port; the session ids it generates start with ``<name>.``, and nginx sends a request
carrying ``sid=<name>.…`` to that process's port (deploy/nginx). The separator is a dot because
python-engineio's ids are URL-safe base64, which never contains one, so ``api1.`` can never be
mistaken for the start of ``api10.``.

Affinity by session id rather than by client address: every process takes its share of the
handshakes, and clients behind one NAT are not all pinned to one process.
"""

from __future__ import annotations

import socketio

SEPARATOR = "."


def node_name(index: int) -> str:
    """The name of the ``index``-th process of ``serve --workers N``."""
    return f"api{index}"


def node_of(sid: str) -> str | None:
    """The process name a session id starts with, or None for an id without one."""
    name, dot, _ = sid.partition(SEPARATOR)
    return name if dot and name else None


def name_sessions(sio: socketio.AsyncServer, node: str) -> None:
    """Make ``sio`` prefix every Engine.IO (and Socket.IO) session id it generates with ``node``.

    ``eio.generate_id`` is python-engineio's one source of session ids (the counterpart of the
    reference server's ``engine.generateId`` hook); Socket.IO's per-namespace ids come from it too.
    An empty ``node`` (one process, or a process not behind the routing) leaves the ids as the
    library makes them."""
    if not node:
        return
    eio = sio.eio
    generate = eio.generate_id

    def generate_id() -> str:
        return f"{node}{SEPARATOR}{generate()}"

    eio.generate_id = generate_id
