"""Profile DTOs. Text is validated to be safe to render: no markup, no control characters."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from wardrobe.core.logging import mask_phone
from wardrobe.core.openapi import server_check
from wardrobe.core.schemas import InputModel, IsoDate, omit_not_null
from wardrobe.models import Gender, Role, User


def _clean_text(value: str, *, multiline: bool = False) -> str:
    value = unicodedata.normalize("NFC", value).strip()
    for ch in value:
        if ch in "<>":
            raise ValueError("must not contain < or >")
        if unicodedata.category(ch) in ("Cc", "Cf") and not (multiline and ch == "\n"):
            raise ValueError("must not contain control or invisible formatting characters")
    return value


def _single_line(value: str) -> str:
    return _clean_text(value)


def _multi_line(value: str) -> str:
    return _clean_text(value, multiline=True)


_PLAIN = "no `<` or `>`, and no control or invisible formatting characters (Unicode Cc, Cf)"
Nickname = Annotated[
    str, AfterValidator(_single_line), Field(min_length=1, max_length=32, json_schema_extra=server_check(_PLAIN))
]
Region = Annotated[
    str, AfterValidator(_single_line), Field(min_length=1, max_length=64, json_schema_extra=server_check(_PLAIN))
]
Bio = Annotated[
    str,
    AfterValidator(_multi_line),
    Field(max_length=500, json_schema_extra=server_check(f"{_PLAIN}; line breaks allowed")),
]


class UserOut(BaseModel):
    id: int
    phone_masked: str | None
    nickname: str | None
    avatar_url: str | None
    gender: Gender
    birthday: date | None = None
    bio: str | None = None
    region: str | None = None
    role: Role
    profile_completed: bool
    created_at: datetime
    totp_enabled: bool = Field(description="Whether logins need the authenticator app's code")

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            phone_masked=mask_phone(user.phone) if user.phone else None,
            nickname=user.nickname,
            avatar_url=user.avatar_url,
            gender=user.gender,
            birthday=user.birthday,
            bio=user.bio,
            region=user.region,
            role=user.role,
            profile_completed=user.profile_completed,
            created_at=user.created_at,
            totp_enabled=user.totp_enabled_at is not None,
        )


class ProfileUpdate(InputModel):
    """Any subset of the profile. Setting a nickname completes the two-step registration."""

    model_config = ConfigDict(extra="forbid")

    # Omit it to keep it; null is refused (a nickname, once set, cannot be removed).
    nickname: Nickname | None = Field(default=None, json_schema_extra=omit_not_null)
    avatar_url: AnyHttpUrl | None = Field(default=None, examples=["https://cdn.example.com/a.png"])
    gender: Literal["unknown", "male", "female"] | None = None
    birthday: IsoDate | None = Field(
        default=None, json_schema_extra=server_check("between 1900-01-01 and today; null clears it")
    )
    bio: Bio | None = None
    region: Region | None = None

    @field_validator("avatar_url")
    @classmethod
    def _https_only(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and value.scheme != "https":
            raise ValueError("must be an https URL")
        if value is not None and len(str(value)) > 512:
            raise ValueError("must be at most 512 characters")
        return value

    @field_validator("birthday")
    @classmethod
    def _plausible_birthday(cls, value: date | None) -> date | None:
        if value is not None and not (date(1900, 1, 1) <= value <= date.today()):
            raise ValueError("must be between 1900-01-01 and today")
        return value


class InviteOut(BaseModel):
    invite_code: str
    invited_count: int


class ReferrerBind(InputModel):
    model_config = ConfigDict(extra="forbid")

    invite_code: str = Field(min_length=4, max_length=20, examples=["7K3M9QXD"])
