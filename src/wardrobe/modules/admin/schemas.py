"""Admin DTOs: user management, a user's detail, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from wardrobe.core.schemas import InputModel
from wardrobe.modules.auth.phone import Phone
from wardrobe.modules.auth.schemas import NewPassword
from wardrobe.modules.users.schemas import UserOut

RoleName = Literal["user", "distributor", "operator", "admin"]
StatusName = Literal["active", "disabled", "deleted"]


class AdminUserOut(UserOut):
    """A user as staff see it: the phone masked, never in full."""

    status: str
    invite_code: str
    referrer_id: int | None


class AdminUserPage(BaseModel):
    items: list[AdminUserOut]
    next_cursor: str | None


class AdminUserCreate(InputModel):
    phone: Phone
    password: NewPassword
    role: RoleName = "user"


class AdminUserUpdate(InputModel):
    role: RoleName | None = None
    status: Literal["active", "disabled"] | None = None
    reason: str = Field(min_length=2, max_length=500)


class Reason(InputModel):
    reason: str = Field(min_length=2, max_length=500)


class SessionsRevoked(BaseModel):
    sessions_revoked: int


# -- A user's detail ----------------------------------------------------------------------------


class MembershipOut(BaseModel):
    sku: str
    name: str | None = Field(description="The plan's name; null if the plan no longer exists")
    expires_at: datetime | None
    active: bool = Field(description="Whether it has not expired yet")


class QuotaDetail(BaseModel):
    balance: int
    held: int
    available: int
    membership: MembershipOut | None


class LedgerRow(BaseModel):
    id: int
    user_id: int
    kind: str
    amount: int
    hold_delta: int
    balance_after: int
    held_after: int
    ref: str
    note: str | None
    actor_id: int | None
    created_at: datetime


class AdminLedgerPage(BaseModel):
    items: list[LedgerRow]
    next_cursor: str | None


class SessionRow(BaseModel):
    id: str
    device: str | None
    client: str | None
    method: str
    ip_masked: str | None
    created_at: datetime
    last_used_at: datetime = Field(description="Its login or its last refresh")
    revoked_at: datetime | None
    revoke_reason: str | None


class OrderRow(BaseModel):
    order_no: str
    sku: str
    name: str
    amount_fen: int
    refunded_fen: int
    channel: str
    status: str
    created_at: datetime
    paid_at: datetime | None


class TaskRow(BaseModel):
    id: str = Field(description="The public task id")
    user_id: int
    feature: str
    status: str
    progress: int
    quota_cost: int
    refunded: bool
    error_code: str | None
    error_message: str | None
    providers: list[str] = Field(description="Slugs of the providers its steps used, in step order")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    retry_of: str | None


class TaskSummary(BaseModel):
    total: int
    by_status: dict[str, int]
    recent: list[TaskRow]


class DistributorRef(BaseModel):
    application_id: int
    status: str


class AdminUserDetail(BaseModel):
    user: AdminUserOut
    quota: QuotaDetail
    ledger: list[LedgerRow]
    sessions: list[SessionRow]
    orders: list[OrderRow]
    tasks: TaskSummary
    distributor: DistributorRef | None


# -- The audit log ------------------------------------------------------------------------------


class AuditRow(BaseModel):
    id: int
    actor_id: int | None
    action: str
    target_type: str
    target_id: str
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime


class AuditPage(BaseModel):
    items: list[AuditRow]
    next_cursor: str | None
