"""Upload and download rules: who may upload what, and what a signed URL authorises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from limits import RateLimitItem
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.errors import AppError, ErrorCode, NotFound, PermissionDenied, ValidationFailed
from wardrobe.core.ratelimit import RateLimiter, parse_limits
from wardrobe.modules.storage import keys, verification
from wardrobe.modules.storage.backend import (
    LocalObjectStorage,
    ObjectExists,
    ObjectNotFound,
    ObjectStorage,
    SignatureExpired,
    SignatureInvalid,
    SignedDownload,
    SignedUpload,
)
from wardrobe.modules.storage.expiring import ExpiringValues
from wardrobe.modules.storage.schemas import UploadCreate
from wardrobe.modules.storage.sts import StsUploadCredentials, UploadCredentials
from wardrobe.settings import Settings

# Types a browser may render from our origin; anything else is served as a download (a stored
# text/html must never run as a page of the API's origin).
INLINE_CONTENT_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})


@lru_cache(maxsize=8)
def _limits(spec: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_limits(spec))


@dataclass(frozen=True, slots=True)
class UploadGrant:
    object_key: str
    method: str
    url: str
    headers: dict[str, str]
    expires_at: datetime
    max_size: int
    # With COS STS: keys that may write this key (and the rest of the user's uploads/ prefix).
    credentials: UploadCredentials | None = None

    def as_dict(self) -> dict[str, Any]:
        upload: dict[str, Any] = {"method": self.method, "url": self.url, "headers": self.headers}
        if self.credentials is not None:
            # api.md's COS STS form {credentials, bucket, region, key}, next to the presigned PUT
            # (which keeps working): a client may use either.
            creds = self.credentials.as_dict()
            upload["credentials"] = {
                name: creds[name] for name in ("tmp_secret_id", "tmp_secret_key", "session_token", "expires_at")
            }
            upload.update(bucket=self.credentials.bucket, region=self.credentials.region, key=self.object_key)
        return {
            "object_key": self.object_key,
            "upload": upload,
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
            "max_size": self.max_size,
        }


@dataclass(slots=True)
class UploadServices:
    """What uploads need beyond the storage: the grants' remembered size bounds, and the STS
    credential issuer when COS direct upload credentials are enabled."""

    grants: ExpiringValues
    credentials: StsUploadCredentials | None = None

    async def aclose(self) -> None:
        if self.credentials is not None:
            await self.credentials.aclose()


def build_upload_services(settings: Settings, redis: Redis | None) -> UploadServices:
    values = ExpiringValues(redis, settings.redis_key_prefix)
    issuer = None
    if settings.storage_sts_enabled:
        issuer = StsUploadCredentials(
            secret_id=settings.tencent_secret_id,
            secret_key=settings.tencent_secret_key.get_secret_value(),
            sts_region=settings.storage_sts_region or settings.storage_s3_region,
            endpoint=settings.storage_sts_endpoint or None,
            scheme=settings.storage_sts_scheme,
            timeout=settings.storage_sts_timeout_seconds,
            bucket=settings.storage_s3_bucket,
            cos_region=settings.storage_s3_region,
            appid=settings.cos_appid,
            duration_seconds=settings.storage_sts_duration_seconds,
            cache=values,
        )
    return UploadServices(grants=values, credentials=issuer)


async def create_upload(
    storage: ObjectStorage,
    limiter: RateLimiter,
    settings: Settings,
    uploads: UploadServices,
    user_id: int,
    body: UploadCreate,
) -> UploadGrant:
    """A fresh key under the user's prefix and a URL that accepts exactly the declared upload;
    with COS STS also the user's upload credentials (left out if STS fails: the URL still works)."""
    if body.size > settings.max_upload_bytes:
        raise ValidationFailed("size", f"must be at most {settings.max_upload_bytes} bytes")
    await limiter.hit(_limits(settings.upload_rate_limits), "uploads", str(user_id))
    key = keys.upload_key(user_id, keys.EXTENSION_BY_CONTENT_TYPE[body.content_type])
    # The signed bound is the declared size: a client cannot announce 1 KB and send 10 MB. A
    # bucket cannot enforce it on a presigned PUT, so it is remembered for the completion.
    target = storage.upload_target(key, body.content_type, body.size, settings.upload_url_ttl_seconds)
    await verification.remember_grant(uploads.grants, key, body.size)
    credentials = None
    if uploads.credentials is not None:
        try:
            credentials = await uploads.credentials.for_user(user_id)
        except AppError:
            credentials = None  # logged by the issuer
    return UploadGrant(
        object_key=key,
        method=target.method,
        url=target.url,
        headers=target.headers,
        expires_at=target.expires_at,
        max_size=body.size,
        credentials=credentials,
    )


async def upload_credentials(
    limiter: RateLimiter, settings: Settings, uploads: UploadServices, user_id: int
) -> UploadCredentials:
    """Temporary COS keys that may write under ``uploads/{user_id}/``."""
    if uploads.credentials is None:
        # 409 like an unavailable payment channel: this deployment does not offer that way.
        raise AppError(
            ErrorCode.CONFLICT,
            data={"reason": "sts_disabled", "message": "upload with the presigned PUT of POST /api/v1/uploads"},
            detail="STS upload credentials are not enabled",
        )
    await limiter.hit(_limits(settings.upload_rate_limits), "upload-credentials", str(user_id))
    return await uploads.credentials.for_user(user_id)


def local_backend(storage: ObjectStorage) -> LocalObjectStorage:
    """The routes that stand in for a bucket exist only for the local backend; with COS or S3 the
    client talks to the bucket and these paths are simply not found."""
    if not isinstance(storage, LocalObjectStorage):
        raise NotFound(detail="storage routes serve the local backend only")
    return storage


def authorize_upload(
    storage: LocalObjectStorage, key: str, query: Sequence[tuple[str, str]], content_type: str | None
) -> SignedUpload:
    try:
        signed = storage.check_upload(key, query)
    except SignatureInvalid as exc:
        raise PermissionDenied(detail=f"upload signature: {exc}") from None
    except SignatureExpired:
        raise AppError(ErrorCode.SIGNED_URL_EXPIRED) from None
    # Content-Type is a signed header, as with S3: a different one is a different request.
    if content_type != signed.content_type:
        raise PermissionDenied(detail="content type differs from the signed one")
    return signed


def authorize_download(storage: LocalObjectStorage, key: str, query: Sequence[tuple[str, str]]) -> SignedDownload:
    try:
        return storage.check_download(key, query)
    except SignatureInvalid as exc:
        raise PermissionDenied(detail=f"download signature: {exc}") from None
    except SignatureExpired:
        raise AppError(ErrorCode.SIGNED_URL_EXPIRED) from None


async def ensure_not_uploaded(storage: ObjectStorage, key: str) -> None:
    """Refuse a replayed PUT before reading its body. Only a shortcut: ``store_upload`` settles
    races atomically."""
    if await storage.head(key) is not None:
        raise AppError(ErrorCode.CONFLICT, detail="object already uploaded")


async def store_upload(
    session: AsyncSession,
    storage: ObjectStorage,
    key: str,
    signed: SignedUpload,
    data: bytes,
    *,
    max_pixels: int,
    max_decode_bytes: int,
) -> dict[str, Any]:
    """Verify that ``data`` is the image it claims to be, store the image alone (nothing after its
    end) once and record it as a verified upload of the key's owner."""
    info = await verification.check_image(data, signed.content_type, max_pixels, max_decode_bytes)
    data = data[: info.length]
    try:
        await storage.put(key, data, info.content_type, overwrite=False)
    except ObjectExists:
        raise AppError(ErrorCode.CONFLICT, detail="object already uploaded") from None
    owner = keys.owner_of(key)
    if owner is not None and key.startswith(f"{keys.UPLOADS}/"):
        await verification.record(session, key, owner, len(data), info)
    return {
        "object_key": key,
        "content_type": info.content_type,
        "size": len(data),
        "width": info.width,
        "height": info.height,
    }


@dataclass(frozen=True, slots=True)
class Download:
    data: bytes
    content_type: str
    disposition: str


async def read_download(storage: ObjectStorage, key: str, signed: SignedDownload) -> Download:
    info = await storage.head(key)
    if info is None:
        raise NotFound()
    try:
        data = await storage.get(key)
    except ObjectNotFound:
        raise NotFound() from None
    content_type, disposition = served_as(key, info.content_type, signed.filename)
    return Download(data=data, content_type=content_type, disposition=disposition)


def served_as(key: str, content_type: str, filename: str | None) -> tuple[str, str]:
    """The Content-Type and Content-Disposition an object is served with, by either backend: our
    image types inline under the key's own name (or as an attachment under a signed download
    name); anything else as an opaque attachment, so nothing we store ever renders as a page of
    the origin serving it. Served with ``X-Content-Type-Options: nosniff`` where the server is ours."""
    if content_type not in INLINE_CONTENT_TYPES:
        content_type = "application/octet-stream"
    name = filename if filename is not None else key.rsplit("/", 1)[-1]
    inline = filename is None and content_type in INLINE_CONTENT_TYPES
    return content_type, content_disposition(name, inline=inline)


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """RFC 6266: the disposition, an ASCII fallback name and the exact name in UTF-8 (RFC 8187)."""
    # Quotes, backslashes and percent signs are read differently by different clients inside the
    # quoted fallback; control characters would break the header.
    fallback = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\%' else "_" for ch in filename)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
