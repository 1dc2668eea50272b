"""Upload DTOs."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from wardrobe.core.openapi import server_check
from wardrobe.core.schemas import InputModel

ImageContentType = Literal["image/png", "image/jpeg", "image/webp"]


def _plain_filename(value: str) -> str:
    # The name is only echoed back (e.g. as a download name); it never becomes part of a key.
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        raise ValueError("must not be blank")
    for ch in value:
        if ch in "/\\" or unicodedata.category(ch) in ("Cc", "Cf"):
            raise ValueError("must be a plain file name (no path, control or invisible characters)")
    return value


Filename = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        json_schema_extra=server_check("a plain file name: no path, no control or invisible characters, not blank"),
    ),
    AfterValidator(_plain_filename),
]


class UploadCreate(InputModel):
    filename: Filename = Field(examples=["look.jpg"])
    content_type: ImageContentType = Field(examples=["image/jpeg"])
    size: int = Field(
        ge=1,
        description="The exact number of bytes that will be sent",
        examples=[524288],
        json_schema_extra=server_check("at most the configured upload cap (WARDROBE_MAX_UPLOAD_BYTES)"),
    )


class TemporaryKeys(BaseModel):
    tmp_secret_id: str
    tmp_secret_key: str
    session_token: str = Field(description="Send it as the security token (S3 SDKs: aws_session_token)")
    expires_at: datetime


class UploadInstructions(BaseModel):
    method: Literal["PUT"]
    url: str = Field(description="Relative to the API's origin unless a public base URL is configured")
    headers: dict[str, str] = Field(description="Send exactly these headers with the bytes")
    credentials: TemporaryKeys | None = Field(
        default=None, description="COS STS only: keys that may PUT `key` (and anything under your uploads/ prefix)"
    )
    bucket: str | None = Field(default=None, description="COS STS only")
    region: str | None = Field(default=None, description="COS STS only")
    key: str | None = Field(default=None, description="COS STS only: the object key to write (= object_key)")


class UploadOut(BaseModel):
    object_key: str = Field(
        description="Use it as the image input of a task once the bytes are sent",
        examples=["uploads/42/2026/11/3f2b0c6d9e8a4b7c9d1e2f3a4b5c6d7e.jpg"],
    )
    upload: UploadInstructions
    expires_at: datetime
    max_size: int = Field(description="The upload URL accepts at most this many bytes")


class UploadComplete(InputModel):
    object_key: str = Field(
        min_length=1,
        max_length=1024,
        examples=["uploads/42/2026/11/3f2b0c6d9e8a4b7c.jpg"],
        json_schema_extra=server_check("a key under your own `uploads/<your id>/`, as POST /api/v1/uploads gave it"),
    )


class UploadCredentialsOut(BaseModel):
    tmp_secret_id: str
    tmp_secret_key: str
    session_token: str = Field(description="Send it as the security token (S3 SDKs: aws_session_token)")
    expires_at: datetime
    bucket: str
    region: str
    prefix: str = Field(description="The keys may write only below this prefix", examples=["uploads/42/"])


class StoredObjectOut(BaseModel):
    object_key: str
    content_type: str
    size: int
    width: int
    height: int
