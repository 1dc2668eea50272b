"""Admin DTOs for user management."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wardrobe.core.schemas import InputModel
from wardrobe.modules.auth.phone import Phone
from wardrobe.modules.auth.schemas import NewPassword
from wardrobe.modules.users.schemas import UserOut

RoleName = Literal["user", "distributor", "operator", "admin"]


class AdminUserOut(UserOut):
    status: str
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
