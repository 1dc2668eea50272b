"""Billing DTOs (api.md "Billing"; the admin plans of /work/briefs contract "Plans")."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from wardrobe.core.openapi import server_check
from wardrobe.core.schemas import EnumValue, InputModel, omit_not_null
from wardrobe.models import LedgerKind, PaymentChannel, PlanKind

SKU_PATTERN = r"^[a-z0-9][a-z0-9_.-]{1,63}$"
TIER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
FEATURE_KEY_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"  # a catalog feature's key
MAX_PRICE_FEN = 10_000_000  # ¥100,000: far above any consumer plan, far below an INT column
MAX_QUOTA = 1_000_000
MAX_PERIOD_DAYS = 3660  # ten years
# Validity windows are stored as DATETIME (MariaDB: years 1000-9999); a plan's are this century.
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def _iso_datetime(value: Any) -> Any:
    """An RFC 3339 time with a zone (``2027-01-01T00:00:00Z``, ``…+08:00``), kept as UTC. A
    datetime object passes too (YAML reads timestamps as such), if it carries a zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("datetime_type", "must be an ISO 8601 time with a zone") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise PydanticCustomError("datetime_type", "must be an ISO 8601 time with a zone")
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "must be between 2000 and 2100") from None
    if not EARLIEST <= value < LATEST:
        raise PydanticCustomError("datetime_range", "must be between 2000 and 2100")
    return value


# A point in time as JSON carries it: an ISO 8601 string with a zone (numbers are refused).
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]
_TIME_RULE = "an ISO 8601 time with a zone, between 2000 and 2100"


def _plain(value: str) -> str:
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        raise ValueError("must not be blank")
    for ch in value:
        if ch in "<>" or unicodedata.category(ch) in ("Cc", "Cf"):
            raise ValueError("must not contain < or >, or control or invisible formatting characters")
    return value


_PLAIN_RULE = "not blank; no `<` or `>`, and no control or invisible formatting characters (Unicode Cc, Cf)"
PlanName = Annotated[
    str, AfterValidator(_plain), Field(min_length=1, max_length=64, json_schema_extra=server_check(_PLAIN_RULE))
]
Reason = Annotated[str, Field(min_length=2, max_length=500, examples=["new price from January"])]


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


FeatureKeys = Annotated[
    list[Annotated[str, Field(pattern=FEATURE_KEY_PATTERN)]],
    AfterValidator(_unique),
    Field(
        max_length=64,
        description="Keys of the plan-gated features this membership unlocks (duplicates are dropped)",
        json_schema_extra=server_check("each names a feature that exists (GET /api/v1/admin/features)"),
    ),
]
Channels = Annotated[
    list[EnumValue[PaymentChannel]],
    AfterValidator(_unique),
    Field(max_length=len(PaymentChannel), description="Payment channels it is offered on; empty: every channel"),
]
PERIOD_RULE = "required (at least 1) for a membership; null for a quota pack"


class PlanOut(BaseModel):
    """A plan on sale, as clients see it."""

    sku: str
    kind: str
    name: str
    name_en: str | None = None
    price_fen: int
    quota: int
    period_days: int | None = None
    tier: str | None = None
    channels: list[str] = Field(default_factory=list, description="Payment channels it is offered on; empty: all")


class PlanWrite(InputModel):
    """A new plan (POST), or an entry of a plans YAML file (`wardrobe plans load`)."""

    sku: str = Field(pattern=SKU_PATTERN, examples=["vip-monthly"])
    kind: EnumValue[PlanKind]
    name: PlanName = Field(examples=["月卡会员"])
    name_en: PlanName | None = Field(default=None, examples=["Monthly membership"])
    price_fen: int = Field(ge=1, le=MAX_PRICE_FEN, examples=[2990], description="In fen; 0 is not sellable")
    quota: int = Field(ge=0, le=MAX_QUOTA, examples=[300])
    period_days: int | None = Field(
        default=None, ge=1, le=MAX_PERIOD_DAYS, examples=[30], json_schema_extra=server_check(PERIOD_RULE)
    )
    tier: str | None = Field(default=None, pattern=TIER_PATTERN, examples=["vip"])
    features: FeatureKeys = Field(default_factory=list)
    channels: Channels = Field(default_factory=list)
    sort_order: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    is_active: bool = True
    valid_from: IsoDateTime | None = Field(default=None, json_schema_extra=server_check(_TIME_RULE))
    valid_to: IsoDateTime | None = Field(
        default=None, json_schema_extra=server_check(f"{_TIME_RULE}; after valid_from")
    )
    reason: Reason | None = None


_NOT_NULL = (
    "kind",
    "name",
    "price_fen",
    "quota",
    "features",
    "channels",
    "sort_order",
    "is_active",
)


class PlanPatch(InputModel):
    """Any subset of a plan's fields (its sku cannot change), and why. Omitted fields keep their
    value; null clears name_en, period_days, tier, valid_from and valid_to."""

    kind: EnumValue[PlanKind] | None = Field(default=None, json_schema_extra=omit_not_null)
    name: PlanName | None = Field(default=None, json_schema_extra=omit_not_null)
    name_en: PlanName | None = None
    price_fen: int | None = Field(default=None, ge=1, le=MAX_PRICE_FEN, json_schema_extra=omit_not_null)
    quota: int | None = Field(default=None, ge=0, le=MAX_QUOTA, json_schema_extra=omit_not_null)
    period_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PERIOD_DAYS,
        json_schema_extra=server_check(f"{PERIOD_RULE} (checked against the plan's kind after the change)"),
    )
    tier: str | None = Field(default=None, pattern=TIER_PATTERN)
    features: FeatureKeys | None = Field(default=None, json_schema_extra=omit_not_null)
    channels: Channels | None = Field(default=None, json_schema_extra=omit_not_null)
    sort_order: int | None = Field(default=None, ge=-1_000_000, le=1_000_000, json_schema_extra=omit_not_null)
    is_active: bool | None = Field(default=None, json_schema_extra=omit_not_null)
    valid_from: IsoDateTime | None = Field(
        default=None, json_schema_extra=server_check(f"{_TIME_RULE}; before the plan's valid_to")
    )
    valid_to: IsoDateTime | None = Field(
        default=None, json_schema_extra=server_check(f"{_TIME_RULE}; after the plan's valid_from")
    )
    reason: Reason

    @field_validator(*_NOT_NULL)
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null (omit it to keep the current value)")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, reason aside."""
        return {name: getattr(self, name) for name in self.model_fields_set if name != "reason"}


class PlanAdminOut(BaseModel):
    sku: str
    kind: str
    name: str
    name_en: str | None
    price_fen: int
    quota: int
    period_days: int | None
    tier: str | None
    features: list[str]
    channels: list[str]
    sort_order: int
    is_active: bool
    valid_from: datetime | None
    valid_to: datetime | None
    created_at: datetime
    updated_at: datetime


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
    kind: LedgerKind
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
