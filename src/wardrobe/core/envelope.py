"""The response envelope every answer comes in, serialised with orjson."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from wardrobe.core.context import lang_var, request_id_var
from wardrobe.core.errors import ErrorCode

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    """Every JSON answer: ``{success, code, message, data, request_id}``."""

    success: bool = True
    code: str = "OK"
    message: str = "OK"
    data: T
    request_id: str = Field(default="-", examples=["6f1c0b1e6f3a4d5e"])


class ErrorEnvelope(BaseModel):
    success: bool = Field(default=False, examples=[False])
    code: str = Field(examples=["VALIDATION_FAILED"])
    message: str = Field(examples=["Request validation failed"])
    data: Any = None
    request_id: str = "-"


class OrjsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def ok(data: Any = None, status_code: int = 200) -> OrjsonResponse:
    """Wrap ``data`` (already JSON-ready) in the success envelope."""
    return OrjsonResponse(
        {"success": True, "code": "OK", "message": "OK", "data": data, "request_id": request_id_var.get()},
        status_code=status_code,
    )


def error_body(code: ErrorCode, data: Any = None) -> dict[str, Any]:
    return {
        "success": False,
        "code": code.name,
        "message": code.message(lang_var.get()),
        "data": data,
        "request_id": request_id_var.get(),
    }


def error_response(code: ErrorCode, data: Any = None, headers: dict[str, str] | None = None) -> OrjsonResponse:
    return OrjsonResponse(error_body(code, data), status_code=code.status, headers=headers)
