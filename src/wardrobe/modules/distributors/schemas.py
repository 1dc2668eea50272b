"""Distributor DTOs. No output model has a field for the full ID number except ``RevealedIdNumber``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from wardrobe.core.logging import mask_phone
from wardrobe.core.openapi import server_check
from wardrobe.core.schemas import InputModel
from wardrobe.models import DistributorApplication
from wardrobe.modules.auth.phone import Phone
from wardrobe.modules.distributors.id_card import ID_NUMBER_PATTERN, normalize_id_number

IdNumber = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        json_schema_extra={
            "pattern": ID_NUMBER_PATTERN,
            **server_check("a real region code, a plausible birth date, and the right check character"),
        },
    ),
    AfterValidator(normalize_id_number),
]
StatusName = Literal["pending", "approved", "rejected"]


class ApplicationCreate(InputModel):
    real_name: str = Field(min_length=2, max_length=32, pattern=r"^[^\x00-\x1f]+$")
    id_number: IdNumber
    phone: Phone


class ApplicationOut(BaseModel):
    id: int
    user_id: int
    real_name: str
    phone_masked: str
    id_number_masked: str
    status: StatusName
    reviewer_id: int | None
    review_reason: str | None
    reviewed_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: DistributorApplication) -> ApplicationOut:
        return cls(
            id=row.id,
            user_id=row.user_id,
            real_name=row.real_name,
            phone_masked=mask_phone(row.phone),
            id_number_masked=row.id_number_masked,
            status=row.status,
            reviewer_id=row.reviewer_id,
            review_reason=row.review_reason,
            reviewed_at=row.reviewed_at,
            created_at=row.created_at,
        )


class MyDistributorStatus(BaseModel):
    is_distributor: bool
    application: ApplicationOut | None  # the latest one


class ApplicationPage(BaseModel):
    items: list[ApplicationOut]
    next_cursor: str | None


class Approval(InputModel):
    reason: str | None = Field(default=None, max_length=500)


class Rejection(InputModel):
    reason: str = Field(min_length=2, max_length=500)


class RevealRequest(InputModel):
    reason: str = Field(min_length=2, max_length=500)  # kept in the audit log


class RevealedIdNumber(BaseModel):
    application_id: int
    id_number: str
