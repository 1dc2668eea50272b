"""OpenAPI helpers: document the error envelopes a route can answer with (A5)."""

from __future__ import annotations

from typing import Any

from wardrobe.core.envelope import ErrorEnvelope
from wardrobe.core.errors import ErrorCode

AUTH_ERRORS = (
    ErrorCode.AUTH_REQUIRED,
    ErrorCode.AUTH_TOKEN_INVALID,
    ErrorCode.AUTH_TOKEN_EXPIRED,
    ErrorCode.AUTH_SESSION_REVOKED,
)


def errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: one entry per status, listing every code it may carry."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in (*codes, ErrorCode.VALIDATION_FAILED, ErrorCode.INTERNAL_ERROR):
        by_status.setdefault(code.status, []).append(code)
    out: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        unique = list(dict.fromkeys(group))
        out[status] = {
            "model": ErrorEnvelope,
            "description": " / ".join(c.name for c in unique),
            "content": {
                "application/json": {
                    "examples": {
                        c.name: {
                            "value": {
                                "success": False,
                                "code": c.name,
                                "message": c.message("en"),
                                "data": None,
                                "request_id": "6f1c0b1e6f3a4d5e",
                            }
                        }
                        for c in unique
                    }
                }
            },
        }
    return out
