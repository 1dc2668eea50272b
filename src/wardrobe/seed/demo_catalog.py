"""The demo features: every one runs on the local CPU provider, so the embedded mode works with
no vendor account. ``cutout`` is multi-step with a fork (two previews made in parallel)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.models import FeatureDefinition
from wardrobe.modules.catalog import service as catalog
from wardrobe.modules.catalog.schemas import FeatureWrite, PipelineWrite
from wardrobe.modules.pipeline.definition import PipelineDef
from wardrobe.modules.providers.base import ProviderRegistry


def _image(title: str) -> dict[str, Any]:
    return {"type": "string", "format": "image-key", "title": title, "maxLength": 256}


def _margin(title: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": 2048, "default": 0, "title": title}


def _local(step_id: str, action: str, inputs: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "sync_api",
        "action": action,
        "provider_candidates": ["local"],
        "inputs": inputs,
        "timeout_seconds": timeout,
        "retries": 1,
    }


DEMO: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {
            "key": "cutout",
            "definition": {
                "steps": [
                    _local("cut", "cutout", {"image": "$inputs.image"}),
                    {
                        "id": "previews",
                        "type": "fork",
                        "max_parallel": 2,
                        "branches": [
                            [_local("small", "thumbnail", {"image": "$steps.cut.image", "max_side": 256})],
                            [_local("large", "thumbnail", {"image": "$steps.cut.image", "max_side": 1024})],
                        ],
                    },
                ],
                "outputs": {
                    "cutout": "$steps.cut.image",
                    "preview": "$steps.small.image",
                    "large": "$steps.large.image",
                },
            },
        },
        {
            "key": "cutout",
            "name": "智能抠图",
            "description": "去除背景：主体放在透明 PNG 上。",
            "name_en": "Cutout",
            "description_en": "Background removal: the subject on a transparent PNG.",
            "quota_cost": 1,
            "sort_order": 10,
            "pipeline_key": "cutout",
            "form_schema": {
                "type": "object",
                "additionalProperties": False,
                "required": ["image"],
                "properties": {"image": _image("Photo")},
            },
        },
    ),
    (
        {
            "key": "eraser",
            "definition": {
                "steps": [_local("erase", "erase", {"image": "$inputs.image", "mask": "$inputs.mask"})],
                "outputs": {"result": "$steps.erase.image"},
            },
        },
        {
            "key": "eraser",
            "name": "消除笔",
            "description": "去掉涂抹的部分，并用周围的内容补上。",
            "name_en": "Eraser",
            "description_en": "Remove what the mask covers and fill it from around.",
            "quota_cost": 1,
            "sort_order": 20,
            "pipeline_key": "eraser",
            "form_schema": {
                "type": "object",
                "additionalProperties": False,
                "required": ["image", "mask"],
                "properties": {"image": _image("Photo"), "mask": _image("Mask (white = erase)")},
            },
        },
    ),
    (
        {
            "key": "outpaint",
            "definition": {
                "steps": [
                    _local(
                        "extend",
                        "outpaint",
                        {
                            "image": "$inputs.image",
                            "left": "$inputs.left",
                            "top": "$inputs.top",
                            "right": "$inputs.right",
                            "bottom": "$inputs.bottom",
                        },
                    )
                ],
                "outputs": {"result": "$steps.extend.image"},
            },
        },
        {
            "key": "outpaint",
            "name": "智能扩图",
            "description": "扩大画布，并补全新增的边缘。",
            "name_en": "Outpaint",
            "description_en": "Extend the canvas and fill the new border.",
            "quota_cost": 2,
            "sort_order": 30,
            "pipeline_key": "outpaint",
            "form_schema": {
                "type": "object",
                "additionalProperties": False,
                "required": ["image", "left", "top", "right", "bottom"],
                "properties": {
                    "image": _image("Photo"),
                    "left": _margin("Left"),
                    "top": _margin("Top"),
                    "right": _margin("Right"),
                    "bottom": _margin("Bottom"),
                },
            },
        },
    ),
    (
        {
            "key": "face_swap",
            "definition": {
                "steps": [_local("swap", "face_swap", {"source": "$inputs.source", "target": "$inputs.target"})],
                "outputs": {"result": "$steps.swap.image"},
            },
        },
        {
            "key": "face_swap",
            "name": "换脸",
            "description": "把一张照片里的脸换到另一张照片上。",
            "name_en": "Face swap",
            "description_en": "Put the face from one photo onto another.",
            "quota_cost": 3,
            "sort_order": 40,
            "pipeline_key": "face_swap",
            "form_schema": {
                "type": "object",
                "additionalProperties": False,
                "required": ["source", "target"],
                "properties": {"source": _image("Face photo"), "target": _image("Target photo")},
            },
        },
    ),
]


def _runninghub(step_id: str, action: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "async_api",
        "action": action,
        "provider_candidates": ["runninghub"],
        "inputs": inputs,
        "timeout_seconds": 600,  # a ComfyUI workflow may queue at RunningHub for minutes
        "poll_interval_seconds": 3,  # the webhook usually ends the wait first
        "retries": 3,
        "backoff_seconds": 5,
    }


# Features that only a vendor can run (no honest local substitute for a generative model): seeded
# when RunningHub has a workflow configured for their action (WARDROBE_RUNNINGHUB_WORKFLOWS).
VENDOR: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {
            "key": "outfit_change",
            "definition": {
                "steps": [
                    _runninghub(
                        "change",
                        "outfit_change",
                        {"person": "$inputs.person", "garment": "$inputs.garment", "hint": "$inputs.hint"},
                    )
                ],
                "outputs": {"result": "$steps.change.image"},
            },
        },
        {
            "key": "outfit_change",
            "name": "AI换装",
            "description": "让一张照片里的人穿上另一张照片里的衣服。",
            "name_en": "Outfit change",
            "description_en": "Dress the person in one photo in the garment from another.",
            "quota_cost": 5,
            "sort_order": 50,
            "pipeline_key": "outfit_change",
            "form_schema": {
                "type": "object",
                "additionalProperties": False,
                "required": ["person", "garment"],
                "properties": {
                    "person": _image("Person photo"),
                    "garment": _image("Garment photo"),
                    "hint": {"type": "string", "title": "Hint (upper body, dress…)", "maxLength": 200},
                },
            },
        },
    ),
    (
        {
            "key": "model_photo",
            "definition": {
                "steps": [
                    _runninghub(
                        "shoot",
                        "model_photo",
                        {
                            "prompt": "$inputs.prompt",
                            "negative_prompt": "$inputs.negative_prompt",
                            "image": "$inputs.image",
                        },
                    )
                ],
                "outputs": {"result": "$steps.shoot.image"},
            },
        },
        {
            "key": "model_photo",
            "name": "AI模特图",
            "description": "按提示词生成穿着你的服装或手持你的商品的模特图。",
            "name_en": "Model photo",
            "description_en": "A model wearing your garment or holding your product, from a prompt.",
            "quota_cost": 5,
            "sort_order": 60,
            "pipeline_key": "model_photo",
            "form_schema": {
                "type": "object",
                "additionalProperties": False,
                "required": ["prompt", "image"],
                "properties": {
                    "prompt": {"type": "string", "title": "Prompt", "minLength": 1, "maxLength": 1000},
                    "negative_prompt": {"type": "string", "title": "Avoid", "maxLength": 1000},
                    "image": _image("Garment or product photo"),
                },
            },
        },
    ),
]


async def seed_demo_catalog(session: AsyncSession, registry: ProviderRegistry) -> int:
    """Create the demo pipelines and features that are missing (idempotent), and the vendor
    features whose workflow is configured."""
    created = 0
    runninghub = registry.get("runninghub")
    vendor = [(p, f) for p, f in VENDOR if runninghub is not None and runninghub.supports(p["key"])]
    for pipeline, feature in [*DEMO, *vendor]:
        if await catalog.latest_pipeline(session, pipeline["key"]) is None:
            await catalog.save_pipeline(
                session,
                registry,
                PipelineWrite(key=pipeline["key"], definition=PipelineDef.model_validate(pipeline["definition"])),
            )
        if await session.scalar(select(FeatureDefinition.id).where(FeatureDefinition.key == feature["key"])) is None:
            await catalog.save_feature(session, FeatureWrite.model_validate(feature))
            created += 1
    return created
