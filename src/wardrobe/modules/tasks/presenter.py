"""Tasks as clients see them: step statuses in pipeline order, signed output URLs, no internals."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.context import lang_var
from wardrobe.core.deps import part
from wardrobe.models import PipelineSchema, StepStatus, Task, TaskStep
from wardrobe.modules.pipeline.definition import PipelineDef
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.tasks.queue import QueuePositions

# Public error codes: what a client may be told about why a task failed, in zh and en. Anything
# else a step reported (vendor codes, internal errors) becomes "processing_failed".
_PUBLIC_ERRORS: dict[str, tuple[str, str]] = {
    "canceled": ("任务已取消", "The task was canceled"),
    "timeout": ("处理步骤耗时过长", "A processing step took too long"),
    "no_face_found": ("图片中未检测到人脸", "No face was found in the image"),
    "no_foreground_found": ("未能从背景中识别出主体", "No subject stands out from the background"),
    "bad_params": ("参数超出允许范围", "A parameter is out of range"),
    "image_too_large": ("图片太大，无法处理", "The image is too large to process"),
    "bad_mask": ("蒙版为空或覆盖了图片的大部分", "The mask is empty or covers too much of the image"),
    "bad_input": ("无法读取输入图片", "An input image could not be read"),
    "input_changed": (
        "输入图片在上传后被替换，请重新上传",
        "An input image was replaced after it was uploaded; upload it again",
    ),
    "content_blocked": ("内容未通过审核", "The content did not pass moderation"),  # ours or the vendor's
    "moderation_unavailable": ("内容审核暂不可用，请稍后再试", "Content moderation was unavailable; try again later"),
    "input_deleted": (
        "输入图片在任务运行前已被删除，请重新选择",
        "An input image was deleted before the task ran; choose another",
    ),
    "processing_failed": ("处理失败", "Processing failed"),
}
# One table per language, so that rendering a failed task costs two dict lookups.
_ERROR_MESSAGES = {
    "zh": {code: zh for code, (zh, _) in _PUBLIC_ERRORS.items()},
    "en": {code: en for code, (_, en) in _PUBLIC_ERRORS.items()},
}


def public_error(error_code: str, lang: str) -> dict[str, str]:
    """A failed task's ``error`` as clients see it: a public code and its sentence in ``lang``."""
    code = error_code if error_code in _PUBLIC_ERRORS else "processing_failed"
    return {"code": code, "message": _ERROR_MESSAGES.get(lang, _ERROR_MESSAGES["zh"])[code]}


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
        error = public_error(task.error_code, lang_var.get()) if task.error_code else None
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
