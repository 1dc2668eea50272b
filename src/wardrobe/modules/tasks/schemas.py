"""Task DTOs (api.md "Features, uploads, tasks"). Internal fields never appear here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from wardrobe.core.openapi import server_check
from wardrobe.core.schemas import InputModel
from wardrobe.models import StepStatus

TaskStatusName = Literal["queued", "running", "succeeded", "failed", "canceled"]


class TaskCreate(InputModel):
    feature: str = Field(min_length=1, max_length=64, examples=["cutout"])
    inputs: dict[str, Any] = Field(
        examples=[{"image": "uploads/1/2026/11/4f1c0b1e6f3a4d5e.png"}],
        json_schema_extra=server_check(
            "checked against the feature's `form_schema` (GET /api/v1/features); an image input is the "
            "`object_key` of one of your own verified uploads or results"
        ),
    )


class StepOut(BaseModel):
    id: str
    status: StepStatus


class OutputOut(BaseModel):
    name: str
    key: str | None = Field(
        default=None,
        description="The result's object key: an image input of your next task (chaining), as an upload's key is",
        examples=["results/1/2026/11/4f1c0b1e6f3a4d5e8a9b0c1d2e3f4a5b-cutout-1-0.png"],
    )
    url: str | None = None
    content_type: str | None = None
    value: Any = None


class TaskError(BaseModel):
    code: str
    message: str


class TaskOut(BaseModel):
    id: str
    feature: str
    status: TaskStatusName
    progress: int
    steps: list[StepOut]
    outputs: list[OutputOut]
    error: TaskError | None
    quota_cost: int
    refunded: bool
    queue_position: int | None = Field(default=None, description="Tasks ahead of this one while queued")
    created_at: datetime
    updated_at: datetime
    files_purged_at: datetime | None = Field(
        default=None,
        description="Set once the task's uploads and results were deleted (retention): outputs are then empty",
    )


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class TaskDeleted(BaseModel):
    id: str
    files: int = Field(description="Objects queued for deletion from storage (deleted right after the answer)")
