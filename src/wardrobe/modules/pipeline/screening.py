"""What a run checks of the images it handles: uploads unchanged since they were verified, and
moderated (uploads once before the first vendor call, each step's stored images before the step
counts as done). The policy is in wardrobe.modules.moderation.moderator.
"""

from __future__ import annotations

from typing import Any

from wardrobe.core.logging import get_logger
from wardrobe.models import StepStatus
from wardrobe.modules.moderation import Purpose
from wardrobe.modules.moderation.gates import image_keys, screen_images
from wardrobe.modules.pipeline.definition import StepDef
from wardrobe.modules.pipeline.run_state import RunState, StepFailed
from wardrobe.modules.storage.verification import live_results, still_verified, verified

log = get_logger("wardrobe.engine")

INPUT_CHANGED = "input_changed"  # an upload replaced after it was verified
INPUT_DELETED = "input_deleted"  # an earlier result named as input, deleted before the task ran


async def screen(run: RunState, step_id: str, keys: list[str], purpose: Purpose) -> None:
    """Fail the step (``step_id``) when the moderator blocks, or cannot check, one of the images."""
    code = await screen_images(
        run.engine.moderator,
        keys,
        user_id=run.task.user_id,
        purpose=purpose,
        task_id=run.task.public_id,
        sleep=run.sleep_interruptibly,
    )
    if code is not None:
        raise StepFailed(step_id, code)  # the task fails and is refunded once when it finishes


async def check_uploads_unchanged(run: RunState, keys: list[str]) -> None:
    """The task was created against verified uploads, but the engine and the vendors read them
    now: one replaced since it was verified (keys that may still write under the user's
    prefix) fails the task, refunded, instead of reaching a vendor unchecked. A missing
    object or record is left to the step that reads it (``bad_input``)."""
    storage = run.engine.storage
    if storage is None or not keys:
        return
    async with run.engine.sessions() as session:
        records = await verified(session, run.task.user_id, keys)
    for key, record in records.items():
        info = await storage.head(key)
        if info is not None and not still_verified(record, info):
            log.warning("input_changed_since_verified", task=run.task.public_id)
            raise StepFailed("inputs", INPUT_CHANGED)


async def check_results_live(run: RunState, keys: list[str]) -> None:
    """A task may chain from the user's earlier results, checked when it was created; one deleted
    since (its task deleted or purged, the object gone) fails the task, refunded, with a code the
    user can act on rather than a vendor's unreadable-input error."""
    storage = run.engine.storage
    if storage is None or not keys:
        return
    async with run.engine.sessions() as session:
        live = await live_results(session, storage, run.task.user_id, keys)
    if set(keys) - live:
        log.info("input_result_deleted", task=run.task.public_id)
        raise StepFailed("inputs", INPUT_DELETED)


async def screen_outputs(run: RunState, step: StepDef, result: dict[str, Any]) -> None:
    """A step's stored images are checked before the step counts as done; blocked (or
    uncheckable) ones are deleted and the step fails, so they are never exposed."""
    keys = image_keys(result)
    try:
        await screen(run, step.id, keys, Purpose.OUTPUT_IMAGE)
    except StepFailed as exc:
        storage = run.engine.moderator.storage
        ours = [key for key in keys if key.startswith(("results/", "tmp/"))]  # never an upload
        if storage is not None and ours:
            await storage.delete_many(ours)
        await run.save_step(step.id, StepStatus.FAILED, error=exc.code, finished=True)
        raise
