"""Catalog rules: who may use which feature, and refusing invalid definitions on save."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.cache import Cache
from wardrobe.core.db import after_commit
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.models import FeatureDefinition, FormSchema, PipelineSchema, Role, User
from wardrobe.models.base import utcnow
from wardrobe.modules.billing.service import MembershipRef
from wardrobe.modules.catalog import forms
from wardrobe.modules.catalog.schemas import FeatureWrite, PipelineWrite
from wardrobe.modules.pipeline.definition import PipelineDef
from wardrobe.modules.providers.base import ProviderRegistry


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A feature as the task path needs it, detached from any session (safe to cache)."""

    key: str
    name: str
    description: str
    name_en: str | None
    description_en: str | None
    is_enabled: bool
    access_scope: str
    plan_required: frozenset[str]
    allowed_accounts: frozenset[int]
    rate_limit_policy: str | None
    quota_cost: int
    form_schema: dict[str, Any]
    pipeline_key: str
    sort_order: int

    def visible_to(self, user: User, membership: MembershipRef | None) -> bool:
        """Enabled, and: staff; or on a whitelist that names the user; or open to all (no
        ``plan_required``); or opened by the user's active membership (``MembershipRef.unlocks``:
        its SKU or tier listed in ``plan_required``, or the feature listed by its plan)."""
        if not self.is_enabled:
            return False
        if user.role in (Role.ADMIN.value, Role.OPERATOR.value):
            return True  # staff try every enabled feature
        if self.access_scope == "whitelist":
            return user.id in self.allowed_accounts
        if not self.plan_required:
            return True
        return membership is not None and membership.unlocks(self.key, self.plan_required)


CATALOG = "catalog"
PIPELINE = "pipeline"


@dataclass(frozen=True, slots=True)
class PipelineRef:
    """The latest version of a pipeline, detached from any session (safe to cache)."""

    id: int
    key: str
    version: int
    definition: dict[str, Any]


async def _load_catalog(session: AsyncSession) -> dict[str, CatalogEntry]:
    rows = await session.execute(
        select(FeatureDefinition, FormSchema.schema)
        .join(FormSchema, FormSchema.id == FeatureDefinition.form_schema_id)
        .where(FeatureDefinition.deleted_at.is_(None))
        .order_by(FeatureDefinition.sort_order, FeatureDefinition.key)
    )
    return {f.key: _entry(f, schema) for f, schema in rows}


async def catalog_entries(session: AsyncSession, cache: Cache) -> dict[str, CatalogEntry]:
    """Every feature not deleted, by key (cached; invalidated by every edit)."""
    return await cache.get(CATALOG, "all", lambda: _load_catalog(session)) or {}


async def current_pipeline(session: AsyncSession, cache: Cache, key: str) -> PipelineRef | None:
    """The latest version of pipeline ``key`` (cached, unknown keys too; a new version invalidates)."""

    async def load() -> PipelineRef | None:
        found = await latest_pipeline(session, key)
        return None if found is None else PipelineRef(found.id, found.key, found.version, found.definition)

    return await cache.get(PIPELINE, key, load)


def catalog_changed(session: AsyncSession, cache: Cache) -> None:
    """Drop the cached catalog everywhere once this session's edit commits."""
    after_commit(session, lambda: cache.invalidate(CATALOG))


def pipeline_changed(session: AsyncSession, cache: Cache, key: str) -> None:
    after_commit(session, lambda: cache.invalidate(PIPELINE, key))


def _entry(feature: FeatureDefinition, schema: dict[str, Any]) -> CatalogEntry:
    plans = frozenset(p.strip() for p in (feature.plan_required or "").split(",") if p.strip())
    return CatalogEntry(
        key=feature.key,
        name=feature.name,
        description=feature.description,
        name_en=feature.name_en,
        description_en=feature.description_en,
        is_enabled=feature.is_enabled,
        access_scope=feature.access_scope,
        plan_required=plans,
        allowed_accounts=frozenset(int(a) for a in feature.allowed_accounts or []),
        rate_limit_policy=feature.rate_limit_policy,
        quota_cost=feature.quota_cost,
        form_schema=schema,
        pipeline_key=feature.pipeline_key,
        sort_order=feature.sort_order,
    )


async def visible_features(
    session: AsyncSession, cache: Cache, user: User, membership: MembershipRef | None
) -> list[CatalogEntry]:
    entries = await catalog_entries(session, cache)
    return [e for e in entries.values() if e.visible_to(user, membership)]


async def usable_feature(
    session: AsyncSession, cache: Cache, user: User, membership: MembershipRef | None, key: str
) -> CatalogEntry:
    """The feature if this user may run it now; FEATURE_UNAVAILABLE otherwise (re-checked)."""
    entry = (await catalog_entries(session, cache)).get(key)
    if entry is None or not entry.visible_to(user, membership):
        raise AppError(ErrorCode.FEATURE_UNAVAILABLE)
    return entry


async def latest_pipeline(session: AsyncSession, key: str) -> PipelineSchema | None:
    stmt = select(PipelineSchema).where(PipelineSchema.key == key).order_by(PipelineSchema.version.desc()).limit(1)
    return await session.scalar(stmt)


def _invalid(field: str, problems: list[str]) -> AppError:
    return AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": field, "message": p} for p in problems])


async def save_pipeline(session: AsyncSession, registry: ProviderRegistry, body: PipelineWrite) -> PipelineSchema:
    """Store a new version of pipeline ``key``; refused if any step could not run here."""
    problems = []
    for step in body.definition.all_steps():
        problems += [
            f"step {step.id}: {p}" for p in registry.problems_for(step.type, step.action, step.provider_candidates)
        ]
    if problems:
        raise _invalid("definition", problems)
    current = await session.scalar(select(func.max(PipelineSchema.version)).where(PipelineSchema.key == body.key))
    pipeline = PipelineSchema(
        key=body.key, version=int(current or 0) + 1, definition=body.definition.model_dump(mode="json")
    )
    session.add(pipeline)
    await session.flush()
    return pipeline


async def save_feature(session: AsyncSession, body: FeatureWrite, existing_id: int | None = None) -> FeatureDefinition:
    """Create or replace a feature after checking its form schema against its pipeline."""
    problems = forms.schema_problems(body.form_schema)
    if problems:
        raise _invalid("form_schema", problems)
    pipeline = await latest_pipeline(session, body.pipeline_key)
    if pipeline is None:
        raise _invalid("pipeline_key", [f"no pipeline {body.pipeline_key!r}"])
    needed = PipelineDef.model_validate(pipeline.definition).input_fields()
    missing = sorted(needed - set(body.form_schema.get("properties", {})))
    if missing:
        raise _invalid("form_schema", [f"the pipeline reads inputs the form lacks: {', '.join(missing)}"])
    if body.rate_limit_policy:
        from wardrobe.core.ratelimit import parse_policy

        try:
            parse_policy(body.rate_limit_policy)
        except ValueError as exc:
            raise _invalid("rate_limit_policy", [str(exc)]) from exc

    if existing_id is None:
        if await session.scalar(select(FeatureDefinition.id).where(FeatureDefinition.key == body.key)):
            raise AppError(ErrorCode.CONFLICT, data=[{"field": "key", "message": "already exists"}])
        form = FormSchema(key=f"{body.key}-form", schema=body.form_schema)
        session.add(form)
        await session.flush()
        feature = FeatureDefinition(key=body.key, form_schema_id=form.id)
        session.add(feature)
    else:
        found = await session.get(FeatureDefinition, existing_id)
        if found is None or found.deleted_at is not None:
            raise NotFound()
        feature = found
        if body.key != feature.key:
            raise _invalid("key", ["a feature's key cannot change"])
        form_row = await session.get(FormSchema, feature.form_schema_id)
        if form_row is not None:
            form_row.schema = body.form_schema
    for name in (
        "name",
        "description",
        "name_en",
        "description_en",
        "is_enabled",
        "access_scope",
        "plan_required",
        "rate_limit_policy",
        "quota_cost",
        "pipeline_key",
        "sort_order",
    ):
        setattr(feature, name, getattr(body, name))
    feature.allowed_accounts = list(body.allowed_accounts)
    feature.updated_at = utcnow()
    await session.flush()
    return feature


async def delete_feature(session: AsyncSession, feature_id: int) -> None:
    feature = await session.get(FeatureDefinition, feature_id)
    if feature is None or feature.deleted_at is not None:
        raise NotFound()
    feature.deleted_at = utcnow()
    feature.is_enabled = False
    await session.flush()


async def switch_feature(session: AsyncSession, feature_id: int, *, enabled: bool) -> tuple[FeatureDefinition, bool]:
    """Turn a feature on or off; answers it and whether it was on before (for the audit record)."""
    feature = await session.get(FeatureDefinition, feature_id, with_for_update=True)
    if feature is None or feature.deleted_at is not None:
        raise NotFound()
    was_enabled = feature.is_enabled
    feature.is_enabled = enabled
    feature.updated_at = utcnow()
    await session.flush()
    return feature, was_enabled
