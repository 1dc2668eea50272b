"""Catalog DTOs: the public feature list and the admin payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from wardrobe.core.openapi import server_check
from wardrobe.core.ratelimit import POLICY_PATTERN
from wardrobe.core.schemas import Id, InputModel
from wardrobe.modules.pipeline.definition import STEP_ID, PipelineDef

KEY = r"^[a-z][a-z0-9_]{1,63}$"


class FeatureOut(BaseModel):
    key: str
    name: str
    description: str
    name_en: str | None = Field(default=None, description="For English-speaking users; null: use `name`")
    description_en: str | None = Field(default=None, description="Likewise; null: use `description`")
    quota_cost: int
    form_schema: dict[str, Any]


class FeatureWrite(InputModel):
    """Create or fully replace a feature."""

    key: str = Field(
        pattern=KEY, json_schema_extra=server_check("on replace, the feature's own key (it cannot change)")
    )
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=2000)
    name_en: str | None = Field(default=None, min_length=1, max_length=64, examples=["Cutout"])
    description_en: str | None = Field(default=None, max_length=2000)
    is_enabled: bool = True
    access_scope: Literal["plan", "whitelist"] = "plan"
    plan_required: str | None = Field(
        default=None,
        max_length=64,
        description="comma-separated membership SKUs or tiers: members whose plan has one of them (or lists "
        "this feature in its `features`) may use it",
    )
    allowed_accounts: list[Id] = Field(default_factory=list, max_length=1000)
    rate_limit_policy: str | None = Field(
        default=None,
        max_length=128,
        examples=["10/minute;100/day"],
        json_schema_extra={"pattern": POLICY_PATTERN},
        description="Tasks per user of this feature, e.g. `10/minute;100/day`; empty or null for none",
    )
    quota_cost: int = Field(ge=1, le=1000)
    form_schema: dict[str, Any] = Field(
        json_schema_extra={
            "required": ["type", "additionalProperties"],
            "properties": {"type": {"const": "object"}, "additionalProperties": {"const": False}},
            **server_check(
                "a JSON Schema (2020-12) of the task's inputs: it must pass the metaschema, and name "
                "every input its pipeline reads; a string property with format `image-key` takes an image"
            ),
        }
    )
    pipeline_key: str = Field(
        pattern=KEY, json_schema_extra=server_check("names a pipeline that exists (GET /api/v1/admin/pipelines)")
    )
    # An INT column: a million either way is more order than any catalogue needs.
    sort_order: int = Field(default=0, ge=-1_000_000, le=1_000_000)


class FeatureSwitch(InputModel):
    """The kill switch: on or off, and why (kept in the audit log)."""

    enabled: bool
    reason: str = Field(min_length=2, max_length=500)


class FeatureAdminOut(FeatureWrite):
    id: int
    deleted_at: datetime | None
    updated_at: datetime


class PipelineWrite(InputModel):
    key: str = Field(pattern=KEY)
    definition: PipelineDef = Field(
        json_schema_extra=server_check(
            "step ids are unique; `$inputs.<field>` and `$steps.<id>.<output>` references are well formed "
            "and name steps that ran before; every output names a step output"
        )
    )


class PipelineOut(BaseModel):
    id: int
    key: str
    version: int
    definition: dict[str, Any]
    created_at: datetime


__all__ = ["STEP_ID", "FeatureAdminOut", "FeatureOut", "FeatureWrite", "PipelineOut", "PipelineWrite"]
