"""Field messages in the request's language: Chinese by default, English when asked for.

Two sources. Pydantic's own errors are rendered from their ``type`` and ``ctx`` (the English stays
pydantic's). Our own sentences are written in English where they are raised and looked up in
``messages_zh.OWN_MESSAGES`` by that sentence; a sentence with a variable part matches its
pattern. Both are applied where an error envelope is built (handlers.py), so no raising code
knows about languages.

Why our own table rather than pydantic-i18n: that package matches pydantic's English sentences
(which change between pydantic releases) rather than the error type, and ships no Chinese, so
the table of sentences would still be ours; by type and context it is as short and sturdier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from wardrobe.core.messages_zh import OWN_MESSAGES

_PLACEHOLDER = re.compile(r"\{(\w+)\}")

# Pydantic's errors by type: the Chinese of what its English says, with the same ``ctx`` fields.
_PYDANTIC_ZH: dict[str, str] = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不允许的字段",
    "string_type": "应为字符串",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "最多 {max_length} 个字符",
    "string_pattern_mismatch": "格式不符合要求：{pattern}",
    "string_unicode": "应为有效的 Unicode 字符串",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_parsing_size": "整数超出范围",
    "int_from_float": "应为整数，不能有小数部分",
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "finite_number": "应为有限的数字",
    "decimal_type": "应为数字",
    "decimal_parsing": "应为数字",
    "bool_type": "应为布尔值",
    "bool_parsing": "应为布尔值",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应大于或等于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应小于或等于 {le}",
    "multiple_of": "应为 {multiple_of} 的倍数",
    "too_short": "至少 {min_length} 项",
    "too_long": "最多 {max_length} 项",
    "list_type": "应为数组",
    "tuple_type": "应为数组",
    "set_type": "应为数组",
    "frozen_set_type": "应为数组",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "model_attributes_type": "应为对象",
    "dataclass_type": "应为对象",
    "none_required": "应为 null",
    "literal_error": "应为以下取值之一：{expected}",
    "enum": "应为以下取值之一：{expected}",
    "union_tag_invalid": "{discriminator} 的取值 {tag} 无效，应为以下之一：{expected_tags}",
    "union_tag_not_found": "无法根据 {discriminator} 判断类型",
    "date_type": "应为日期",
    "date_parsing": "应为有效的日期（YYYY-MM-DD）",
    "date_from_datetime_parsing": "应为有效的日期（YYYY-MM-DD）",
    "date_from_datetime_inexact": "应为不含时间部分的日期",
    "date_past": "应为过去的日期",
    "date_future": "应为将来的日期",
    "datetime_type": "应为日期时间",
    "datetime_parsing": "应为有效的日期时间（ISO 8601）",
    "datetime_from_date_parsing": "应为有效的日期时间（ISO 8601）",
    "datetime_object_invalid": "应为有效的日期时间",
    "datetime_past": "应为过去的时间",
    "datetime_future": "应为将来的时间",
    "timezone_aware": "应带有时区",
    "timezone_naive": "不能带有时区",
    "time_type": "应为时间",
    "time_parsing": "应为有效的时间",
    "time_delta_type": "应为时长",
    "time_delta_parsing": "应为有效的时长",
    "url_type": "应为 URL",
    "url_parsing": "应为有效的 URL",
    "url_syntax_violation": "应为有效的 URL",
    "url_too_long": "URL 最多 {max_length} 个字符",
    "url_scheme": "URL 协议应为 {expected_schemes}",
    "uuid_type": "应为 UUID",
    "uuid_parsing": "应为有效的 UUID",
    "uuid_version": "应为第 {expected_version} 版 UUID",
    "bytes_type": "应为字节串",
    "bytes_too_short": "至少 {min_length} 字节",
    "bytes_too_long": "最多 {max_length} 字节",
    "json_invalid": "不是合法的 JSON",
    "json_type": "应为 JSON 字符串",
    "is_instance_of": "类型不正确",
    "frozen_field": "不能修改",
}
# Pydantic writes a choice as "'a', 'b' or 'c'": the same list with the Chinese enumeration comma.
_CHOICES = {"expected", "expected_tags", "expected_schemes"}


def _pattern(msgid: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(msgid)
    # split() alternates literal text and placeholder names: even items are text, odd are names.
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
    return re.compile(f"^{regex}$", re.DOTALL)


@cache
def _catalog() -> tuple[dict[str, str], list[tuple[re.Pattern[str], str]]]:
    """Exact sentences for a dict lookup; patterns tried most specific (most literal text) first."""
    exact = {k: v for k, v in OWN_MESSAGES.items() if not _PLACEHOLDER.search(k)}
    templated = [k for k in OWN_MESSAGES if _PLACEHOLDER.search(k)]
    templated.sort(key=lambda k: len(_PLACEHOLDER.sub("", k)), reverse=True)
    return exact, [(_pattern(k), OWN_MESSAGES[k]) for k in templated]


def own_message_zh(message: str) -> str | None:
    """The Chinese of one of our English sentences, or None when the catalog lacks it."""
    exact, patterns = _catalog()
    found = exact.get(message)
    if found is not None:
        return found
    for pattern, zh in patterns:
        match = pattern.match(message)
        if match:
            parts = match.groupdict()
            if "sentence" in parts:  # a sentence of ours inside another ("step a: <sentence>")
                parts["sentence"] = own_message_zh(parts["sentence"]) or parts["sentence"]
            return zh.format_map(parts)
    return None


def translate(message: str, lang: str) -> str:
    """``message`` (one of ours, in English) in ``lang``; left in English when it is unknown."""
    if lang == "en":
        return message
    return own_message_zh(message) or message


def _ctx_text(name: str, value: Any) -> str:
    text = str(value)
    if name in _CHOICES:
        text = text.replace(" or ", "、").replace(", ", "、")
    return text


def pydantic_message(error: Mapping[str, Any], lang: str) -> str:
    """One of pydantic's errors as a client reads it: its sentence without the "Value error, "
    prefix in English; in Chinese our catalog's sentence for a message of ours (a ValueError or
    a custom error), else the sentence for its type filled from its context."""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if lang == "en":
        return message
    own = own_message_zh(message)
    if own is not None:
        return own
    template = _PYDANTIC_ZH.get(str(error.get("type")))
    if template is None:  # a ValueError not in the catalog: its English says more than a stock phrase
        return message
    ctx = error.get("ctx") or {}
    try:
        return template.format_map({k: _ctx_text(k, v) for k, v in ctx.items()})
    except (KeyError, IndexError, ValueError):
        return message


def localize_items(data: Any, lang: str) -> Any:
    """An error's data with the message of each ``{field, message}`` item (or of a ``{reason,
    message}`` object) in ``lang``; any other shape unchanged."""
    if lang == "en":
        return data
    if isinstance(data, list):
        return [localize_items(item, lang) if isinstance(item, dict) else item for item in data]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return {**data, "message": translate(data["message"], lang)}
    return data
