"""Admin routes for the catalog: features and versioned pipelines (operators and admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from wardrobe.core.audit import add_audit
from wardrobe.core.deps import CacheDep, SessionDep, part
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import Principal, require
from wardrobe.core.schemas import Id
from wardrobe.models import FeatureDefinition, PipelineSchema
from wardrobe.modules.catalog import repository, service
from wardrobe.modules.catalog.schemas import FeatureAdminOut, FeatureSwitch, FeatureWrite, PipelineOut, PipelineWrite
from wardrobe.modules.providers.base import ProviderRegistry

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Editor = Annotated[Principal, Depends(require(Permission.CATALOG_WRITE))]
Reader = Annotated[Principal, Depends(require(Permission.CATALOG_READ))]
Switcher = Annotated[Principal, Depends(require(Permission.CATALOG_SWITCH))]
# The providers a pipeline may name (their actions are checked when it is saved).
ProvidersDep = Annotated[ProviderRegistry, Depends(part(ProviderRegistry))]
DENIED = (*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED)


def _feature_body(feature: FeatureDefinition, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": feature.id,
        "key": feature.key,
        "name": feature.name,
        "description": feature.description,
        "name_en": feature.name_en,
        "description_en": feature.description_en,
        "is_enabled": feature.is_enabled,
        "access_scope": feature.access_scope,
        "plan_required": feature.plan_required,
        "allowed_accounts": feature.allowed_accounts or [],
        "rate_limit_policy": feature.rate_limit_policy,
        "quota_cost": feature.quota_cost,
        "form_schema": schema,
        "pipeline_key": feature.pipeline_key,
        "sort_order": feature.sort_order,
        "deleted_at": feature.deleted_at,
        "updated_at": feature.updated_at,
    }


def _pipeline_body(p: PipelineSchema) -> dict[str, Any]:
    return {"id": p.id, "key": p.key, "version": p.version, "definition": p.definition, "created_at": p.created_at}


@router.get(
    "/features",
    summary="Every feature, including disabled ones",
    response_model=Envelope[list[FeatureAdminOut]],
    responses=errors(*DENIED),
)
async def list_features(_: Reader, session: SessionDep) -> OrjsonResponse:
    return ok([_feature_body(f, s) for f, s in await repository.features_with_forms(session)])


async def _saved(
    session: SessionDep, cache: CacheDep, actor: Principal, feature: FeatureDefinition, action: str
) -> dict[str, Any]:
    service.catalog_changed(session, cache)
    add_audit(session, actor_id=actor.id, action=action, target_type="feature", target_id=feature.key, reason=None)
    return _feature_body(feature, await repository.form_of(session, feature))


@router.post(
    "/features",
    status_code=201,
    summary="Create a feature (its form and pipeline are checked)",
    response_model=Envelope[FeatureAdminOut],
    responses=errors(*DENIED, ErrorCode.CONFLICT),
)
async def create_feature(body: FeatureWrite, actor: Editor, cache: CacheDep, session: SessionDep) -> OrjsonResponse:
    feature = await service.save_feature(session, body)
    return ok(await _saved(session, cache, actor, feature, "feature.create"), status_code=201)


@router.put(
    "/features/{feature_id}",
    summary="Replace a feature",
    response_model=Envelope[FeatureAdminOut],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def replace_feature(
    feature_id: Id, body: FeatureWrite, actor: Editor, cache: CacheDep, session: SessionDep
) -> OrjsonResponse:
    feature = await service.save_feature(session, body, existing_id=feature_id)
    return ok(await _saved(session, cache, actor, feature, "feature.update"))


@router.delete(
    "/features/{feature_id}",
    summary="Retire a feature (soft delete; tasks keep their history)",
    response_model=Envelope[None],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def delete_feature(feature_id: Id, actor: Editor, cache: CacheDep, session: SessionDep) -> OrjsonResponse:
    await service.delete_feature(session, feature_id)
    service.catalog_changed(session, cache)
    add_audit(
        session,
        actor_id=actor.id,
        action="feature.delete",
        target_type="feature",
        target_id=str(feature_id),
        reason=None,
    )
    return ok(None)


@router.post(
    "/features/{feature_id}/switch",
    summary="Kill switch: turn a feature off (or back on) at once, with a reason",
    description="Off: new tasks of the feature are refused with `FEATURE_UNAVAILABLE` on every API "
    "process from the next request; tasks already queued or running finish. Audited with the reason.",
    response_model=Envelope[FeatureAdminOut],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def switch_feature(
    feature_id: Id, body: FeatureSwitch, actor: Switcher, cache: CacheDep, session: SessionDep
) -> OrjsonResponse:
    feature, was_enabled = await service.switch_feature(session, feature_id, enabled=body.enabled)
    service.catalog_changed(session, cache)
    add_audit(
        session,
        actor_id=actor.id,
        action="feature.enable" if body.enabled else "feature.disable",
        target_type="feature",
        target_id=feature.key,
        reason=body.reason,
        before={"enabled": was_enabled},
        after={"enabled": body.enabled},
    )
    return ok(_feature_body(feature, await repository.form_of(session, feature)))


@router.get(
    "/pipelines",
    summary="Every pipeline version",
    response_model=Envelope[list[PipelineOut]],
    responses=errors(*DENIED),
)
async def list_pipelines(_: Reader, session: SessionDep) -> OrjsonResponse:
    return ok([_pipeline_body(p) for p in await repository.pipelines(session)])


@router.post(
    "/pipelines",
    status_code=201,
    summary="Save a new version of a pipeline (refused if invalid)",
    response_model=Envelope[PipelineOut],
    responses=errors(*DENIED),
)
async def create_pipeline(
    body: PipelineWrite, actor: Editor, cache: CacheDep, providers: ProvidersDep, session: SessionDep
) -> OrjsonResponse:
    pipeline = await service.save_pipeline(session, providers, body)
    service.pipeline_changed(session, cache, pipeline.key)
    add_audit(
        session,
        actor_id=actor.id,
        action="pipeline.create",
        target_type="pipeline",
        target_id=f"{pipeline.key}@{pipeline.version}",
        reason=None,
    )
    return ok(_pipeline_body(pipeline), status_code=201)
