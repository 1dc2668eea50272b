"""Every message a person reads comes in Chinese by default and in English when asked for."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic_core import PydanticKnownError

from tests.conftest import Api
from tests.core.message_sources import own_messages
from tests.fixtures.auth import sms_login
from wardrobe.core.i18n import _PYDANTIC_ZH, localize_items, own_message_zh, pydantic_message, translate
from wardrobe.core.json_guard import GUARD_MESSAGES
from wardrobe.core.messages_zh import OWN_MESSAGES
from wardrobe.modules.tasks.presenter import _PUBLIC_ERRORS, public_error

_CJK = re.compile(r"[\u4e00-\u9fff]")
EN = {"Accept-Language": "en"}


def test_every_message_of_ours_has_its_chinese() -> None:
    found = own_messages()
    # The collector reads the source: too few finds would mean it stopped seeing the messages.
    assert len(found) > 60
    missing = {message: where for message, where in found.items() if own_message_zh(message) is None}
    missing.update({m: "core/json_guard.py" for m in GUARD_MESSAGES if own_message_zh(m) is None})
    assert not missing, f"add these to core/messages_zh.py: {missing}"


def test_catalog_entries_are_chinese_and_keep_only_their_own_holes() -> None:
    for msgid, zh in OWN_MESSAGES.items():
        assert _CJK.search(zh), msgid
        assert set(re.findall(r"\{(\w+)\}", zh)) <= set(re.findall(r"\{(\w+)\}", msgid)), msgid


def test_variable_parts_are_carried_and_english_is_left_alone() -> None:
    assert translate("must be at least 10 characters", "zh") == "至少 10 个字符"
    assert translate("must be at least 10 characters", "en") == "must be at least 10 characters"
    # The fixed sentence wins over the pattern that would also match it.
    assert translate("must be at most 512 characters", "zh") == "最多 512 个字符"
    assert translate("'x' is not a provider that runs on accounts here", "zh") == "'x' 不是可配置账号的服务商"
    assert translate("'a.png' is not a 'image-key'", "zh") == "'a.png' 不是有效的 'image-key'"
    assert translate("a sentence nobody wrote", "zh") == "a sentence nobody wrote"
    # A sentence inside another is translated in turn.
    assert translate("step a: unknown provider 'ghost'", "zh") == "步骤 a：未知的服务商 'ghost'"


def test_error_data_is_localized_in_its_two_shapes() -> None:
    items = [{"field": "sku", "message": "no such plan"}, "other"]
    assert localize_items(items, "zh") == [{"field": "sku", "message": "套餐不存在"}, "other"]
    reason = {"reason": "changed_during_verification", "message": "the object changed while it was verified"}
    assert localize_items(reason, "zh") == {**reason, "message": "文件在校验过程中被修改"}
    assert localize_items(items, "en") is items
    assert localize_items({"retry_after": 3}, "zh") == {"retry_after": 3}


def _english_template(error_type: str) -> tuple[str, dict[str, Any]]:
    """Pydantic's own template for ``error_type``, with a context it accepts (found by asking)."""
    ctx: dict[str, Any] = {}
    for _ in range(6):
        try:
            return PydanticKnownError(error_type, ctx or None).message_template, ctx  # type: ignore[arg-type]
        except (KeyError, TypeError) as exc:
            needed = re.search(r"'(\w+)' required in context", str(exc))
            if needed:
                ctx[needed.group(1)] = "7"
                continue
            wants_number = re.search(r"'(\w+)' context value must be", str(exc))
            if wants_number is None:
                raise AssertionError(error_type) from exc  # not an error type pydantic has
            ctx[wants_number.group(1)] = 7
    raise AssertionError(error_type)


@pytest.mark.parametrize("error_type", sorted(_PYDANTIC_ZH))
def test_pydantic_types_are_real_and_their_chinese_uses_their_context(error_type: str) -> None:
    template, ctx = _english_template(error_type)
    holes = set(re.findall(r"\{(\w+)\}", _PYDANTIC_ZH[error_type]))
    assert holes <= set(re.findall(r"\{(\w+)\}", template)), error_type
    english = PydanticKnownError(error_type, ctx or None).message()  # type: ignore[arg-type]
    rendered = pydantic_message({"type": error_type, "msg": english, "ctx": ctx}, "zh")
    assert _CJK.search(rendered), rendered
    assert "{" not in rendered, rendered  # every hole was filled


def test_pydantic_messages_of_ours_use_the_catalog_and_choices_read_as_chinese() -> None:
    custom = {"type": "datetime_type", "msg": "must be an ISO 8601 time with a zone"}
    assert pydantic_message(custom, "zh") == "应为带时区的 ISO 8601 时间"
    value_error = {"type": "value_error", "msg": "Value error, must not be blank", "ctx": {"error": "x"}}
    assert pydantic_message(value_error, "zh") == "不能为空"
    assert pydantic_message(value_error, "en") == "must not be blank"
    literal = {"type": "literal_error", "msg": "...", "ctx": {"expected": "'sms', 'password' or 'wechat'"}}
    assert pydantic_message(literal, "zh") == "应为以下取值之一：'sms'、'password'、'wechat'"


def test_task_errors_have_both_languages() -> None:
    for code, (zh, en) in _PUBLIC_ERRORS.items():
        assert _CJK.search(zh), code
        assert not _CJK.search(en), code
        assert public_error(code, "zh") == {"code": code, "message": zh}
        assert public_error(code, "en") == {"code": code, "message": en}
    assert public_error("VENDOR_E42", "en") == {"code": "processing_failed", "message": "Processing failed"}


def _first_message(body: dict[str, Any], field: str) -> str:
    assert body["code"] == "VALIDATION_FAILED", body
    return next(str(item["message"]) for item in body["data"] if item["field"] == field)


async def test_a_pydantic_error_follows_accept_language(api: Api) -> None:
    user = await sms_login(api.client)
    body = {"filename": "", "content_type": "image/png", "size": 10}
    zh = (await api.client.post("/api/v1/uploads", json=body, headers=user.headers)).json()
    en = (await api.client.post("/api/v1/uploads", json=body, headers={**user.headers, **EN})).json()
    assert zh["message"] == "请求参数校验失败"
    assert _first_message(zh, "filename") == "至少 1 个字符"
    assert _first_message(en, "filename") == "String should have at least 1 character"


async def test_a_message_of_ours_follows_accept_language(api: Api) -> None:
    user = await sms_login(api.client)
    url = "/api/v1/tasks?cursor=aWQ6IDc"  # "id: 7": not a cursor the API gave out
    zh = (await api.client.get(url, headers=user.headers)).json()
    en = (await api.client.get(url, headers={**user.headers, **EN})).json()
    assert _first_message(zh, "cursor") == "不是本接口给出的游标"
    assert _first_message(en, "cursor") == "is not a cursor this API gave out"


async def test_a_validator_of_ours_follows_accept_language(api: Api) -> None:
    user = await sms_login(api.client)
    body = {"filename": "a/b.png", "content_type": "image/png", "size": 10}
    zh = (await api.client.post("/api/v1/uploads", json=body, headers=user.headers)).json()
    en = (await api.client.post("/api/v1/uploads", json=body, headers={**user.headers, **EN})).json()
    assert _first_message(zh, "filename") == "应为单纯的文件名（不含路径、控制字符或不可见字符）"
    assert _first_message(en, "filename") == "must be a plain file name (no path, control or invisible characters)"
