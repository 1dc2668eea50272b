"""Catalog DTOs: the public feature list and the admin payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from wardrobe.core.schemas import Id, InputModel
from wardrobe.modules.pipeline.definition import STEP_ID, PipelineDef

KEY = r"^[a-z][a-z0-9_]{1,63}$"


class FeatureOut(BaseModel):
    key: str
    name: str
    description: str
    quota_cost: int
    form_schema: dict[str, Any]


class FeatureWrite(InputModel):
    """Create or fully replace a feature."""

    key: str = Field(pattern=KEY)
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=2000)
    is_enabled: bool = True
    access_scope: Literal["plan", "whitelist"] = "plan"
    plan_required: str | None = Field(default=None, max_length=64, description="comma-separated membership SKUs")
    allowed_accounts: list[Id] = Field(default_factory=list, max_length=1000)
    rate_limit_policy: str | None = Field(default=None, max_length=128, examples=["10/minute;100/day"])
    quota_cost: int = Field(ge=1, le=1000)
    form_schema: dict[str, Any]
    pipeline_key: str = Field(pattern=KEY)
    # An INT column: a million either way is more order than any catalogue needs.
    sort_order: int = Field(default=0, ge=-1_000_000, le=1_000_000)


class FeatureSwitch(InputModel):
    """The kill switch (F4): on or off, and why (kept in the audit log)."""

    enabled: bool
    reason: str = Field(min_length=2, max_length=500)


class FeatureAdminOut(FeatureWrite):
    id: int
    deleted_at: datetime | None
    updated_at: datetime


class PipelineWrite(InputModel):
    key: str = Field(pattern=KEY)
    definition: PipelineDef


class PipelineOut(BaseModel):
    id: int
    key: str
    version: int
    definition: dict[str, Any]
    created_at: datetime


__all__ = ["STEP_ID", "FeatureAdminOut", "FeatureOut", "FeatureWrite", "PipelineOut", "PipelineWrite"]
