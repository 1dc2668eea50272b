"""The RunningHub peer's vocabulary: paths, codes and messages, the workflows it knows, its
tasks and answers (re-exported by ``tests.peers.runninghub``)."""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

CREATE = "/task/openapi/create"
AI_APP_RUN = "/task/openapi/ai-app/run"
STATUS = "/task/openapi/status"
OUTPUTS = "/task/openapi/outputs"
CANCEL = "/task/openapi/cancel"
ACCOUNT_STATUS = "/uc/openapi/accountStatus"
UPLOAD = "/task/openapi/upload"
WEBHOOK_DETAIL = "/task/openapi/getWebhookDetail"
RETRY_WEBHOOK = "/task/openapi/retryWebhook"
JSON_API_FORMAT = "/api/openapi/getJsonApiFormat"
FILES_PREFIX = "/files"

QUEUED, RUNNING, SUCCESS, FAILED = "QUEUED", "RUNNING", "SUCCESS", "FAILED"

MESSAGES = {
    0: "success",
    301: "PARAMS_INVALID",
    380: "WORKFLOW_NOT_EXISTS",
    412: "TOKEN_INVALID",
    415: "TASK_INSTANCE_MAXED",
    416: "TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET",
    421: "TASK_QUEUE_MAXED",
    423: "TASK_NOT_FOUNED",  # sic
    433: "VALIDATE_PROMPT_FAILED",
    500: "UNKNOWN_ERROR",
    801: "APIKEY_UNSUPPORTED_FREE_USER",
    802: "APIKEY_UNAUTHORIZED",
    803: "APIKEY_INVALID_NODE_INFO",
    804: "APIKEY_TASK_IS_RUNNING",
    805: "APIKEY_TASK_STATUS_ERROR",
    806: "APIKEY_USER_NOT_FOUND",
    807: "APIKEY_TASK_NOT_FOUND",
    808: "APIKEY_UPLOAD_FAILED",
    809: "APIKEY_FILE_SIZE_EXCEEDED",
    810: "WORKFLOW_NOT_SAVED_OR_NOT_RUNNING",
    811: "CORPAPIKEY_INVALID",
    812: "CORPAPIKEY_INSUFFICIENT_FUNDS",
    813: "APIKEY_TASK_IS_QUEUED",
    814: "PERSONAL_QUEUE_COUNT_LIMIT",
    901: "WEBAPP_NOT_EXISTS",
}

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
UPLOAD_FILE_TYPES = {"image": "png", "video": "mp4", "audio": "mp3", "input": "zip"}

FieldType = Literal["string", "int", "float", "bool", "image"]
NodeFields = Mapping[str, Mapping[str, FieldType]]
LostMode = Literal["bad_gateway", "timeout"]


@dataclass(frozen=True, slots=True)
class Workflow:
    """A ComfyUI workflow the peer knows: which node fields a ``nodeInfoList`` may set."""

    workflow_id: str
    nodes: NodeFields
    output_node_id: str = "9"
    ran_on_web: bool = True  # False: create answers 810 (never run successfully on the web)


@dataclass(frozen=True, slots=True)
class WebApp:
    """An AI app (``/task/openapi/ai-app/run``) and its settable node fields."""

    webapp_id: str
    nodes: NodeFields
    output_node_id: str = "9"


@dataclass(slots=True)
class PeerKey:
    key: str
    cap: int  # QUEUED + RUNNING tasks at once; one more is refused 421
    coins: int


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A result file a test hands to ``succeed``."""

    content: bytes
    file_type: str = "png"
    node_id: str | None = None  # default: the workflow's output node


@dataclass(frozen=True, slots=True)
class ServedFile:
    name: str
    url: str
    content: bytes
    file_type: str
    node_id: str


@dataclass(slots=True)
class PeerTask:
    task_id: str
    api_key: str
    kind: Literal["workflow", "webapp"]
    target_id: str  # workflowId or webappId
    node_info: list[dict[str, Any]]
    webhook_url: str | None
    output_node_id: str
    file_base_url: str
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = QUEUED
    created_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    files: list[ServedFile] = field(default_factory=list)
    failed_reason: dict[str, Any] | None = None
    cancelled: bool = False
    consume_coins: int = 0

    @property
    def finished(self) -> bool:
        return self.status in (SUCCESS, FAILED)

    @property
    def cost_seconds(self) -> int:
        if self.started_at is None or self.finished_at is None:
            return 0
        return round(self.finished_at - self.started_at)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A non-zero answer: where, to which key (as sent), and the key's tasks in flight then."""

    path: str
    api_key: str
    code: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    media_type: str = "application/json"
    hold: bool = False  # the call ran; keep the connection silent until released


@dataclass(slots=True)
class Fault:
    path: str
    code: int
    msg: str | None
    data: Any


class RunningHubError(Exception):
    def __init__(self, code: int, data: Any = None, msg: str | None = None, reason: str = "") -> None:
        super().__init__(f"{code} {reason}".strip())
        self.code = code
        self.msg = msg or MESSAGES.get(code, "UNKNOWN_ERROR")
        self.data = data
        self.reason = reason


def envelope(code: int, data: Any = None, msg: str | None = None) -> dict[str, Any]:
    return {"code": code, "msg": msg or MESSAGES.get(code, "UNKNOWN_ERROR"), "data": data}


def json_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def result_png(seed: str) -> bytes:
    """A small real PNG whose colour depends on ``seed``: results of different tasks differ."""
    digest = hashlib.sha256(seed.encode()).digest()
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (digest[0], digest[1], digest[2])).save(out, format="PNG")
    return out.getvalue()


def parse_id(raw: Any) -> str | None:
    """RunningHub ids are digit strings; JSON numbers are taken too, as its Java server does."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)) or raw == "":
        return None
    return str(raw)
