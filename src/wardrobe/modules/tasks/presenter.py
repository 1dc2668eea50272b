"""Tasks as clients see them: step statuses in pipeline order, signed output URLs, no internals."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.infra import Infra
from wardrobe.models import PipelineSchema, StepStatus, Task, TaskStep
from wardrobe.modules.pipeline.definition import PipelineDef

# Public error codes: what a client may be told about why a task failed. Anything else a step
# reported (vendor codes, internal errors) becomes "processing_failed".
_PUBLIC_ERRORS = {
    "canceled": "The task was canceled",
    "timeout": "A processing step took too long",
    "no_face_found": "No face was found in the image",
    "no_foreground_found": "No subject stands out from the background",
    "bad_params": "A parameter is out of range",
    "image_too_large": "The image is too large to process",
    "bad_mask": "The mask is empty or covers too much of the image",
    "bad_input": "An input image could not be read",
    "processing_failed": "Processing failed",
}


async def _step_orders(session: AsyncSession, infra: Infra, schema_ids: set[int]) -> dict[int, list[str]]:
    # Pipeline versions never change once written, so their step lists are cached for good.
    cache: dict[int, list[str]] = infra.pipeline_steps_cache
    missing = schema_ids - cache.keys()
    if missing:
        rows = await session.execute(
            select(PipelineSchema.id, PipelineSchema.definition).where(PipelineSchema.id.in_(missing))
        )
        for schema_id, definition in rows:
            cache[schema_id] = [s.id for s in PipelineDef.model_validate(definition).all_steps()]
    return {i: cache.get(i, []) for i in schema_ids}


async def present(
    session: AsyncSession, infra: Infra, tasks: list[Task], positions: dict[int, int] | None = None
) -> list[dict[str, Any]]:
    """Serialise a page of tasks with two queries, whatever the page size (no N+1)."""
    if not tasks:
        return []
    orders = await _step_orders(session, infra, {t.pipeline_schema_id for t in tasks})
    rows = await session.execute(
        select(TaskStep.task_id, TaskStep.step_id, TaskStep.status).where(TaskStep.task_id.in_([t.id for t in tasks]))
    )
    statuses: dict[int, dict[str, str]] = {}
    for task_id, step_id, status in rows:
        statuses.setdefault(task_id, {})[step_id] = status
    ttl = infra.settings.download_url_ttl_seconds
    out = []
    for task in tasks:
        known = statuses.get(task.id, {})
        steps = [{"id": s, "status": known.get(s, StepStatus.PENDING.value)} for s in orders[task.pipeline_schema_id]]
        outputs = []
        for item in task.outputs or []:
            if "object_key" in item:
                outputs.append(
                    {
                        "name": item["name"],
                        "url": infra.storage.download_url(item["object_key"], ttl, None),
                        "content_type": item.get("content_type"),
                    }
                )
            else:
                outputs.append({"name": item["name"], "value": item.get("value")})
        error = None
        if task.error_code:
            code = task.error_code if task.error_code in _PUBLIC_ERRORS else "processing_failed"
            error = {"code": code, "message": _PUBLIC_ERRORS[code]}
        out.append(
            {
                "id": task.public_id,
                "feature": task.feature_key,
                "status": task.status,
                "progress": task.progress,
                "steps": steps,
                "outputs": outputs,
                "error": error,
                "quota_cost": task.quota_cost,
                "refunded": task.refunded,
                "queue_position": (positions or {}).get(task.id),
                "created_at": task.created_at,
                "updated_at": task.updated_at,
            }
        )
    return out
