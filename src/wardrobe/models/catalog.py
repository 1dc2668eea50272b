"""The feature catalog: what users can run, the form each takes, the pipeline behind it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class FormSchema(Base):
    """A JSON Schema (Draft 2020-12) for a feature's inputs: served to clients, enforced on create."""

    __tablename__ = "form_schemas"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class PipelineSchema(Base):
    """A versioned pipeline definition. Versions are immutable; a task runs the version it was
    created with, so editing a pipeline never changes a task already queued."""

    __tablename__ = "pipeline_schemas"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_pipeline_schemas_key_version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeatureDefinition(Base):
    __tablename__ = "feature_definitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    # What an English-speaking user reads; None: the name and description above.
    name_en: Mapped[str | None] = mapped_column(String(64))
    description_en: Mapped[str | None] = mapped_column(Text)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    access_scope: Mapped[str] = mapped_column(String(16), default="plan")  # plan | whitelist
    plan_required: Mapped[str | None] = mapped_column(String(64))
    allowed_accounts: Mapped[list[int]] = mapped_column(JSON, default=list)
    rate_limit_policy: Mapped[str | None] = mapped_column(String(128))
    quota_cost: Mapped[int] = mapped_column(Integer, default=1)
    form_schema_id: Mapped[int] = mapped_column(BigId, ForeignKey("form_schemas.id"))
    pipeline_key: Mapped[str] = mapped_column(String(64))
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
