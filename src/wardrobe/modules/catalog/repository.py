"""Queries of the catalog's admin views (the rules' own reads stay in service.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import FeatureDefinition, FormSchema, PipelineSchema


async def features_with_forms(session: AsyncSession) -> list[tuple[FeatureDefinition, dict[str, Any]]]:
    """Every feature, disabled ones included, with its form, in the order users see them."""
    rows = await session.execute(
        select(FeatureDefinition, FormSchema.schema)
        .join(FormSchema, FormSchema.id == FeatureDefinition.form_schema_id)
        .order_by(FeatureDefinition.sort_order, FeatureDefinition.key)
    )
    return [(feature, schema) for feature, schema in rows]


async def form_of(session: AsyncSession, feature: FeatureDefinition) -> dict[str, Any]:
    return await session.scalar(select(FormSchema.schema).where(FormSchema.id == feature.form_schema_id)) or {}


async def pipelines(session: AsyncSession) -> list[PipelineSchema]:
    """Every version of every pipeline, by key then version."""
    return list(await session.scalars(select(PipelineSchema).order_by(PipelineSchema.key, PipelineSchema.version)))
