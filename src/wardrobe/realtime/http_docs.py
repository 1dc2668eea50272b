"""The Engine.IO HTTP endpoint at ``/socket.io/`` in the OpenAPI document, so that what it answers
to plain HTTP (the long-polling transport, and anything else a client or a scanner sends) is part
of the contract and of the contract test. The Socket.IO events themselves are in /asyncapi.json."""

from __future__ import annotations

from typing import Any

SOCKETIO_PATH = "/socket.io/"
# What python-engineio serves (OPTIONS: its CORS preflight, not part of the contract); anything
# else is 405 (hub.py).
METHODS = ("GET", "OPTIONS", "POST")

_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_REFUSED = {
    "description": "Not an Engine.IO request this server takes: an unsupported protocol version, an unknown "
    "session, another transport, or a browser Origin that is not this service's own or one of "
    "WARDROBE_CORS_ORIGINS. The body is a sentence, as python-engineio writes it.",
    "content": _TEXT,
}
_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "EIO",
        "in": "query",
        "required": True,
        "schema": {"const": "4"},
        "description": "The Engine.IO protocol version (python-socketio 5 / socket.io-client 4 speak 4)",
    },
    {
        "name": "transport",
        "in": "query",
        "required": False,
        "schema": {"enum": ["polling", ""]},
        "description": "Long-polling (also when empty or absent); a websocket is the same URL with "
        "`transport=websocket` and an HTTP Upgrade",
    },
    {
        "name": "t",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "A cache-buster some clients add; ignored",
    },
]


def _sid(required: bool) -> dict[str, Any]:
    return {
        "name": "sid",
        "in": "query",
        "required": required,
        "schema": {"type": "string", "maxLength": 64},
        "description": "The session id the handshake gave (it names the process that holds it: `api0.…`)",
    }


SOCKETIO_PATHS: dict[str, Any] = {
    SOCKETIO_PATH: {
        "get": {
            "tags": ["realtime"],
            "operationId": "realtime_poll",
            "summary": "Engine.IO long-polling: open a session (no sid) or read its packets (with sid)",
            "description": "Use a Socket.IO client rather than this directly: connect with `auth: {token}`, then "
            "see /asyncapi.json for the events and docs/realtime.md for the rules.",
            "parameters": [*_PARAMETERS, _sid(required=False)],
            "responses": {
                "200": {
                    "description": "Engine.IO packets: the handshake `0{sid, upgrades, pingInterval, pingTimeout, "
                    "maxPayload}` for a new session, else the session's waiting packets",
                    "content": _TEXT,
                },
                "400": _REFUSED,
            },
        },
        "post": {
            "tags": ["realtime"],
            "operationId": "realtime_send",
            "summary": "Engine.IO long-polling: send packets to a session",
            "parameters": [*_PARAMETERS, _sid(required=True)],
            "requestBody": {"required": True, "content": _TEXT, "description": "Engine.IO packets"},
            "responses": {"200": {"description": "`ok`", "content": _TEXT}, "400": _REFUSED},
        },
    }
}
