"""Billing DTOs (api.md "Billing")."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from wardrobe.core.schemas import InputModel


class PlanOut(BaseModel):
    sku: str
    kind: str
    name: str
    price_fen: int
    quota: int
    period_days: int | None = None


class Membership(BaseModel):
    plan: str
    expires_at: datetime


class QuotaOut(BaseModel):
    balance: int
    held: int
    available: int
    membership: Membership | None


class LedgerItem(BaseModel):
    id: int
    kind: str
    amount: int
    balance_after: int
    ref: str
    created_at: datetime


class LedgerPage(BaseModel):
    items: list[LedgerItem]
    next_cursor: str | None


class QuotaAdjustment(InputModel):
    delta: int = Field(ge=-1_000_000, le=1_000_000, examples=[20], json_schema_extra={"not": {"const": 0}})
    reason: str = Field(min_length=2, max_length=255, examples=["compensation for a failed batch"])

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be 0")
        return value


class QuotaAdjusted(BaseModel):
    balance: int
    held: int
    available: int
