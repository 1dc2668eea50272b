"""Per-request context carried in context variables (request id, user id, language)."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
user_id_var: ContextVar[int | None] = ContextVar("user_id", default=None)
lang_var: ContextVar[str] = ContextVar("lang", default="zh")


def pick_language(accept_language: str | None) -> str:
    """Choose zh or en from an Accept-Language header, honouring q-values; zh-CN is the default."""
    if not accept_language:
        return "zh"
    best_lang, best_q = "zh", -1.0
    for part in accept_language.split(","):
        piece = part.strip()
        if not piece:
            continue
        tag, _, params = piece.partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in ("zh", "en") and q > best_q:
            best_lang, best_q = primary, q
    return best_lang
