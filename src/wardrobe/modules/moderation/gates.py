"""Where moderation meets the task path: the prompt gate at task creation and the image gates the
engine runs at a task's start (uploads) and after each step (stored outputs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.modules.moderation.moderator import Moderator
from wardrobe.modules.moderation.verdict import (
    CONTENT_BLOCKED,
    MODERATION_UNAVAILABLE,
    PASSED,
    ModerationUnavailable,
    Purpose,
)
from wardrobe.modules.storage.keys import RESULTS, TMP, UPLOADS

log = get_logger("wardrobe.moderation")

# A feature's form schema marks other free-text fields for moderation with this keyword.
MODERATE_KEYWORD = "x-moderate"
PROMPT_RETRY_AFTER_SECONDS = 5


def prompt_fields(schema: Mapping[str, Any], inputs: Mapping[str, Any]) -> list[str]:
    """Inputs checked as prompts: string inputs whose name contains ``prompt`` (``prompt``,
    ``style_prompt``), and those the schema marks ``"x-moderate": true``. A ``negative…`` prompt
    is exempt unless marked: it lists what must *not* appear ("nsfw, nude" is a common one), so
    blocking on its words would refuse the most careful users."""
    properties = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
    names = []
    for name, value in inputs.items():
        if not isinstance(value, str) or not value.strip():
            continue
        prop = properties.get(name) if isinstance(properties, Mapping) else None
        marked = prop.get(MODERATE_KEYWORD) if isinstance(prop, Mapping) else None
        if marked is False:
            continue
        if marked or ("prompt" in name.lower() and not name.lower().startswith("negative")):
            names.append(name)
    return names


async def screen_prompts(
    moderator: Moderator, schema: Mapping[str, Any], inputs: Mapping[str, Any], *, user_id: int
) -> None:
    """Raise ``CONTENT_BLOCKED`` (422) if a prompt is blocked, ``DEPENDENCY_UNAVAILABLE`` (503,
    ``Retry-After``) if it could not be checked. Runs before any quota is held."""
    blocked = []
    for name in prompt_fields(schema, inputs):
        try:
            verdict = await moderator.check_text(str(inputs[name]), user_id=user_id, purpose=Purpose.PROMPT)
        except ModerationUnavailable as exc:
            log.warning("moderation_unavailable", purpose=Purpose.PROMPT.value, source=exc.source, error_code=exc.code)
            raise AppError(
                ErrorCode.DEPENDENCY_UNAVAILABLE,
                data={"dependency": "moderation", "retry_after": PROMPT_RETRY_AFTER_SECONDS},
                headers={"Retry-After": str(PROMPT_RETRY_AFTER_SECONDS)},
                detail=f"moderation unavailable: {exc.code}",
            ) from None
        if moderator.blocks(verdict, Purpose.PROMPT, user_id=user_id, field=name):
            blocked.append({"field": f"inputs.{name}", "message": "content not allowed"})
    if blocked:
        raise AppError(ErrorCode.CONTENT_BLOCKED, data=blocked, detail="prompt blocked by moderation")


def image_keys(value: Any, *, bare_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Object keys in a step's outputs or a task's inputs: every ``{"object_key": ...}`` under
    ``results/``, ``tmp/`` or ``uploads/`` (of an image, when its content type is given), and bare
    strings starting with one of ``bare_prefixes`` (an image input is a bare upload key)."""
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, Mapping):
            key = item.get("object_key")
            content_type = item.get("content_type")
            is_image = not isinstance(content_type, str) or content_type.startswith("image/")
            if isinstance(key, str) and key.startswith((f"{RESULTS}/", f"{TMP}/", f"{UPLOADS}/")) and is_image:
                found.append(key)
            else:
                for nested in item.values():
                    walk(nested)
        elif isinstance(item, list | tuple):
            for nested in item:
                walk(nested)
        elif isinstance(item, str) and bare_prefixes and item.startswith(bare_prefixes):
            found.append(item)

    walk(value)
    return list(dict.fromkeys(found))


async def screen_images(
    moderator: Moderator,
    keys: Iterable[str],
    *,
    user_id: int,
    purpose: Purpose,
    task_id: str,
    sleep: Callable[[float], Awaitable[None]],
) -> str | None:
    """``content_blocked`` if any image is blocked, ``moderation_unavailable`` if one could not be
    checked after ``outage_attempts`` tries (retryable outages only), else None."""
    if not moderator.checks_images:
        return None
    for key in keys:
        for attempt in range(1, moderator.outage_attempts + 1):
            try:
                verdict = await moderator.check_image(key, user_id=user_id, purpose=purpose, data_id=task_id)
                break
            except (KeyError, FileNotFoundError):
                # Gone (an upload deleted meanwhile): nothing to expose, and the step that needs
                # it fails on its own with bad_input.
                log.info("moderation_image_missing", purpose=purpose.value, task=task_id)
                verdict = PASSED
                break
            except ModerationUnavailable as exc:
                log.warning(
                    "moderation_unavailable",
                    purpose=purpose.value,
                    task=task_id,
                    source=exc.source,
                    error_code=exc.code,
                    attempt=attempt,
                )
                if not exc.retryable or attempt == moderator.outage_attempts:
                    return MODERATION_UNAVAILABLE
                await sleep(moderator.outage_backoff_seconds * 2 ** (attempt - 1))
        if moderator.blocks(verdict, purpose, task=task_id, user_id=user_id):
            return CONTENT_BLOCKED
    return None
