"""Tasks as clients see them: step statuses in pipeline order, signed output URLs, no internals."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.deps import part
from wardrobe.models import PipelineSchema, StepStatus, Task, TaskStep
from wardrobe.modules.pipeline.definition import PipelineDef
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.tasks.queue import QueuePositions

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
    "input_changed": "An input image was replaced after it was uploaded; upload it again",
    "content_blocked": "The content did not pass moderation",  # ours or the vendor's
    "moderation_unavailable": "Content moderation was unavailable; try again later",
    "input_deleted": "An input image was deleted before the task ran; choose another",
    "processing_failed": "Processing failed",
}


class TaskFields(Protocol):
    """What a view is made of: a Task entity, or a row of the same-named columns (the list's
    lean query), so both paths render through ``view``."""

    @property
    def public_id(self) -> str: ...
    @property
    def feature_key(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def progress(self) -> int: ...
    @property
    def outputs(self) -> list[dict[str, Any]] | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def quota_cost(self) -> int: ...
    @property
    def refunded(self) -> bool: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def files_purged_at(self) -> datetime | None: ...


class TaskViews:
    """How this process shows tasks: signed output URLs from its storage, and its pipelines' step
    orders, cached for the process's life because a pipeline version never changes once written."""

    def __init__(self, storage: ObjectStorage, download_url_ttl_seconds: int) -> None:
        self.storage = storage
        self.download_url_ttl_seconds = download_url_ttl_seconds
        self._orders: dict[int, list[str]] = {}
        self.queue = QueuePositions()

    def cached_orders(self, schema_ids: set[int]) -> dict[int, list[str]] | None:
        """The step orders of ``schema_ids`` if all are cached already (no session needed)."""
        if schema_ids - self._orders.keys():
            return None
        return {i: self._orders[i] for i in schema_ids}

    async def step_orders(self, session: AsyncSession, schema_ids: set[int]) -> dict[int, list[str]]:
        missing = schema_ids - self._orders.keys()
        if missing:
            rows = await session.execute(
                select(PipelineSchema.id, PipelineSchema.definition).where(PipelineSchema.id.in_(missing))
            )
            for schema_id, definition in rows:
                self._orders[schema_id] = [s.id for s in PipelineDef.model_validate(definition).all_steps()]
        return {i: self._orders.get(i, []) for i in schema_ids}

    def view(
        self, task: TaskFields, order: list[str], known: dict[str, str], position: int | None = None
    ) -> dict[str, Any]:
        """One task as clients see it: ``order`` is its pipeline's step ids, ``known`` the persisted
        step statuses (absent = pending)."""
        pending = StepStatus.PENDING.value
        outputs = []
        for item in task.outputs or ():
            if "object_key" in item:
                url = self.storage.download_url(item["object_key"], self.download_url_ttl_seconds, None)
                outputs.append(
                    {
                        "name": item["name"],
                        "key": item["object_key"],
                        "url": url,
                        "content_type": item.get("content_type"),
                    }
                )
            else:
                outputs.append({"name": item["name"], "value": item.get("value")})
        error = None
        if task.error_code:
            code = task.error_code if task.error_code in _PUBLIC_ERRORS else "processing_failed"
            error = {"code": code, "message": _PUBLIC_ERRORS[code]}
        return {
            "id": task.public_id,
            "feature": task.feature_key,
            "status": task.status,
            "progress": task.progress,
            "steps": [{"id": s, "status": known.get(s, pending)} for s in order],
            "outputs": outputs,
            "error": error,
            "quota_cost": task.quota_cost,
            "refunded": task.refunded,
            "queue_position": position,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
            "files_purged_at": task.files_purged_at,
        }


async def present(
    session: AsyncSession,
    views: TaskViews,
    tasks: list[Task],
    positions: dict[int, int] | None = None,
    *,
    new: bool = False,
) -> list[dict[str, Any]]:
    """Serialise tasks with two queries, whatever their number (no N+1); ``new`` tasks were created
    in this transaction and have no step rows yet, so the second query is skipped."""
    if not tasks:
        return []
    orders = await views.step_orders(session, {t.pipeline_schema_id for t in tasks})
    statuses: dict[int, dict[str, str]] = {}
    if not new:
        rows = await session.execute(
            select(TaskStep.task_id, TaskStep.step_id, TaskStep.status).where(
                TaskStep.task_id.in_([t.id for t in tasks])
            )
        )
        for task_id, step_id, status in rows:
            statuses.setdefault(task_id, {})[step_id] = status
    return [
        views.view(t, orders[t.pipeline_schema_id], statuses.get(t.id, {}), (positions or {}).get(t.id)) for t in tasks
    ]


TaskViewsDep = Annotated[TaskViews, Depends(part(TaskViews, backed=False))]
