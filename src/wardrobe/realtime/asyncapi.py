"""The Socket.IO contract as an AsyncAPI 3.0 document, served at ``/asyncapi.json`` beside
``/openapi.json``: the events and acknowledgements hub.py and events.py send, with JSON Schemas
of their payloads (the task and order payloads are the HTTP API's own models), and the handshake
rules under ``x-socketio``. docs/realtime.md says the same for people; a test holds real events
to these schemas. Written here rather than generated: no maintained Python library describes a
python-socketio server in AsyncAPI 3, and the payloads reuse the pydantic models of the HTTP API."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter
from pydantic.json_schema import models_json_schema
from starlette.responses import JSONResponse

from wardrobe.core.errors import ErrorCode
from wardrobe.modules.payments.schemas import OrderOut
from wardrobe.modules.providers.endpoints import ProviderOut
from wardrobe.modules.tasks.schemas import TaskOut
from wardrobe.realtime.hub import MAX_SUBSCRIBE, SESSION_ENDED
from wardrobe.realtime.provider_feed import PROVIDER_HEALTH

router = APIRouter()
REF = "#/components/schemas/{model}"

# Why a connect is refused: the refusal's `message` (its data where it has some).
CONNECT_REFUSALS = [
    ErrorCode.AUTH_REQUIRED,
    ErrorCode.AUTH_TOKEN_INVALID,
    ErrorCode.AUTH_TOKEN_EXPIRED,
    ErrorCode.AUTH_SESSION_REVOKED,
    ErrorCode.ACCOUNT_DISABLED,
    ErrorCode.RATE_LIMITED,
    ErrorCode.CONNECTION_LIMIT_REACHED,
]
# Why a socket is dropped (session.ended) or a subscribe refused: its token or session is no good.
SESSION_CODES = [
    ErrorCode.AUTH_REQUIRED,
    ErrorCode.AUTH_TOKEN_INVALID,
    ErrorCode.AUTH_TOKEN_EXPIRED,
    ErrorCode.AUTH_SESSION_REVOKED,
    ErrorCode.ACCOUNT_DISABLED,
]


def _names(codes: list[ErrorCode]) -> list[str]:
    return [c.name for c in codes]


def _event(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Every server event is ``{type, payload, traceId}``."""
    return {
        "type": "object",
        "required": ["type", "payload", "traceId"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": kind},
            "payload": payload,
            "traceId": {
                "type": "string",
                "description": "The trace id of the change, for support: "
                "a task's events carry the id of the request that created it",
            },
        },
    }


_TASK_IDS = {
    "type": "array",
    "minItems": 1,
    "maxItems": MAX_SUBSCRIBE,
    "items": {"type": "string", "minLength": 1, "maxLength": 64},
    "description": "Ids of the caller's tasks, or of any user's for staff with tasks:read (duplicates count once)",
}
_QUOTA = {
    "type": "object",
    "required": ["balance", "held", "available"],
    "additionalProperties": False,
    "properties": {
        "balance": {"type": "integer"},
        "held": {"type": "integer", "description": "Reserved by tasks that have not ended"},
        "available": {"type": "integer", "description": "balance - held"},
    },
}


def _provider_schemas() -> dict[str, Any]:
    """The staff's provider feed: subscribe_providers, its acknowledgement, provider.health."""
    providers = {
        "type": "array",
        "items": {"$ref": REF.format(model="ProviderOut")},
        "description": "Every provider as GET /api/v1/admin/providers shows it",
    }
    return {
        "ProviderHealth": _event(PROVIDER_HEALTH, providers),
        "SubscribeProviders": {"description": "No payload (anything sent is ignored)"},
        "SubscribeProvidersAck": {
            "type": "object",
            "required": ["ok", "providers"],
            "additionalProperties": False,
            "properties": {
                "ok": {"type": "boolean"},
                "code": {
                    "enum": _names([ErrorCode.PERMISSION_DENIED, *SESSION_CODES]),
                    "description": "Why not (only when ok is false): PERMISSION_DENIED without catalog:read",
                },
                "providers": {**providers, "description": "The views now (empty when ok is false)"},
            },
        },
        "UnsubscribeProvidersAck": {
            "type": "object",
            "required": ["ok"],
            "additionalProperties": False,
            "properties": {"ok": {"type": "boolean"}},
        },
    }


def _schemas() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(TaskOut, "serialization"), (OrderOut, "serialization"), (ProviderOut, "serialization")], ref_template=REF
    )
    schemas: dict[str, Any] = dict(defs["$defs"])
    task = {"$ref": REF.format(model="TaskOut")}
    schemas.update(_provider_schemas())
    schemas.update(
        {
            "TaskUpdated": _event("task.updated", task),
            "QuotaUpdated": _event("quota.updated", _QUOTA),
            "OrderUpdated": _event("order.updated", {"$ref": REF.format(model="OrderOut")}),
            "SessionEnded": _event(
                SESSION_ENDED,
                {
                    "type": "object",
                    "required": ["code"],
                    "additionalProperties": False,
                    "properties": {"code": {"enum": _names(SESSION_CODES)}},
                },
            ),
            "Subscribe": {
                "type": "object",
                "required": ["task_ids"],
                "properties": {"task_ids": _TASK_IDS},
            },
            "SubscribeAck": {
                "type": "object",
                "required": ["ok", "tasks", "refused"],
                "additionalProperties": False,
                "properties": {
                    "ok": {"type": "boolean"},
                    "code": {
                        "enum": _names([ErrorCode.VALIDATION_FAILED, *SESSION_CODES]),
                        "description": "Why not (only when ok is false)",
                    },
                    "tasks": {"type": "array", "items": task, "description": "Snapshots of the joined tasks"},
                    "refused": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Ids not joined: another user's, unknown and deleted tasks look alike",
                    },
                },
            },
            "Unsubscribe": {"type": "object", "required": ["task_ids"], "properties": {"task_ids": _TASK_IDS}},
            "UnsubscribeAck": {
                "type": "object",
                "required": ["ok"],
                "additionalProperties": False,
                "properties": {"ok": {"type": "boolean"}, "code": {"const": ErrorCode.VALIDATION_FAILED.name}},
            },
            "ConnectAuth": {
                "type": "object",
                "required": ["token"],
                "properties": {
                    "token": {"type": "string", "description": "An access token from /api/v1/auth/login"},
                    "lang": {
                        "enum": ["zh", "en"],
                        "description": "The language of a failed task's error.message; without it, the "
                        "handshake's Accept-Language, else zh",
                    },
                },
            },
            "ConnectRefused": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"enum": _names(CONNECT_REFUSALS)},
                    "data": {
                        "type": "object",
                        "properties": {
                            "retry_after": {"type": "integer", "minimum": 1, "description": "RATE_LIMITED: seconds"},
                            "limit": {"type": "integer", "minimum": 1, "description": "CONNECTION_LIMIT_REACHED"},
                        },
                    },
                },
            },
        }
    )
    return schemas


def _message(name: str, schema: str, summary: str) -> dict[str, Any]:
    return {"name": name, "summary": summary, "payload": {"$ref": REF.format(model=schema)}}


_MESSAGES = {
    "taskUpdated": _message(
        "task.updated",
        "TaskUpdated",
        "A subscribed task's state, read after each committed change (status, a step, progress); to the "
        "task's room. A task's states arrive in commit order and only move forward.",
    ),
    "quotaUpdated": _message(
        "quota.updated",
        "QuotaUpdated",
        "The user's quota after a task reserved or settled it, or an order; to the user",
    ),
    "orderUpdated": _message("order.updated", "OrderUpdated", "One of the user's orders changed (paid, refunded…)"),
    "sessionEnded": _message(
        SESSION_ENDED,
        "SessionEnded",
        "Sent just before the server drops the socket: its session ended (logout, revoked, banned, password "
        "changed) or its access token expired. Reconnect with a fresh token, or log in again.",
    ),
    "providerHealth": _message(
        PROVIDER_HEALTH,
        "ProviderHealth",
        "The provider views (switch, slots in use, health, accounts) to staff who emitted subscribe_providers, "
        "whenever they change; each API process checks at most every WARDROBE_SOCKET_PROVIDER_PUSH_SECONDS",
    ),
    "subscribe": _message(
        "subscribe",
        "Subscribe",
        "Join the rooms of these tasks of yours (any user's for staff with tasks:read) (acknowledged)",
    ),
    "subscribeAck": _message("subscribe", "SubscribeAck", "The acknowledgement of subscribe"),
    "unsubscribe": _message("unsubscribe", "Unsubscribe", "Leave these tasks' rooms (acknowledged)"),
    "unsubscribeAck": _message("unsubscribe", "UnsubscribeAck", "The acknowledgement of unsubscribe"),
    "subscribeProviders": _message(
        "subscribe_providers",
        "SubscribeProviders",
        "Staff with catalog:read: follow the providers' health (provider.health) (acknowledged)",
    ),
    "subscribeProvidersAck": _message(
        "subscribe_providers", "SubscribeProvidersAck", "The acknowledgement of subscribe_providers"
    ),
    "unsubscribeProviders": _message(
        "unsubscribe_providers", "SubscribeProviders", "Stop following the providers' health (acknowledged)"
    ),
    "unsubscribeProvidersAck": _message(
        "unsubscribe_providers", "UnsubscribeProvidersAck", "The acknowledgement of unsubscribe_providers"
    ),
}


def _operation(action: str, message: str, reply: str | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": "#/channels/socket"},
        "messages": [{"$ref": f"#/channels/socket/messages/{message}"}],
    }
    if reply is not None:
        operation["reply"] = {
            "channel": {"$ref": "#/channels/socket"},
            "messages": [{"$ref": f"#/channels/socket/messages/{reply}"}],
        }
    return operation


_HANDSHAKE = {
    "path": "/socket.io",
    "auth": {"$ref": REF.format(model="ConnectAuth")},
    "refusal": {
        "$ref": REF.format(model="ConnectRefused"),
        "description": "The connect_error a refused connect gets; `message` is the code",
    },
    "origin": "A browser's Origin must be this service's own origin or one of WARDROBE_CORS_ORIGINS (an empty "
    "list means same origin only); a refused Origin fails the Engine.IO handshake with HTTP 400. Clients "
    "that send no Origin (WeChat mini programs, native apps) are admitted on their token alone.",
    "limits": "Connects per client address (WARDROBE_SOCKET_CONNECT_LIMIT_PER_IP) and per user "
    "(WARDROBE_SOCKET_CONNECT_LIMIT_PER_USER): RATE_LIMITED with data.retry_after; at most "
    "WARDROBE_SOCKETS_PER_USER live sockets per user across all processes: CONNECTION_LIMIT_REACHED with data.limit",
    "transports": ["polling", "websocket"],
}


@cache
def asyncapi_document() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Wardrobe live updates (Socket.IO)",
            "version": "0.1.0",
            "description": "Socket.IO (protocol 5, Engine.IO 4) at /socket.io, default namespace. Connect "
            "with auth {token}, emit subscribe with your task ids, receive events `{type, payload, traceId}`. "
            "Events missed while disconnected are not replayed: after a reconnect, subscribe again and take "
            "the snapshot from the acknowledgement. See docs/realtime.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "api": {
                "host": "{host}",
                "protocol": "wss",
                "pathname": "/socket.io",
                "variables": {"host": {"default": "127.0.0.1:8000"}},
                "description": "The API's own host; behind nginx, the site `wardrobe nginx-config` renders",
            }
        },
        "channels": {
            "socket": {
                "address": "/",
                "description": "The default namespace: one connection per client, rooms per user and per task",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in _MESSAGES},
            }
        },
        "operations": {
            "receiveSubscribe": _operation("receive", "subscribe", "subscribeAck"),
            "receiveUnsubscribe": _operation("receive", "unsubscribe", "unsubscribeAck"),
            "receiveSubscribeProviders": _operation("receive", "subscribeProviders", "subscribeProvidersAck"),
            "receiveUnsubscribeProviders": _operation("receive", "unsubscribeProviders", "unsubscribeProvidersAck"),
            "sendProviderHealth": _operation("send", "providerHealth"),
            "sendTaskUpdated": _operation("send", "taskUpdated"),
            "sendQuotaUpdated": _operation("send", "quotaUpdated"),
            "sendOrderUpdated": _operation("send", "orderUpdated"),
            "sendSessionEnded": _operation("send", "sessionEnded"),
        },
        "components": {"messages": _MESSAGES, "schemas": _schemas()},
        "x-socketio": {"handshake": _HANDSHAKE},
    }


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi() -> JSONResponse:
    return JSONResponse(asyncapi_document())
