"""Verified uploads: an uploaded object may feed a task only once its bytes were checked (size
bound, sniffed type, pixel cap) and a ``VerifiedUpload`` row ties it to its owner.

The local backend checks the bytes on arrival (its PUT route); with COS or S3 the client sends them
straight to the bucket, then calls ``POST /api/v1/uploads/complete``, which reads the object back
and checks it here. A presigned PUT cannot bound the size, so the grant's bound is remembered
(``remember_grant``) and applied now; keys a client chose itself under STS credentials get the
global ``max_upload_bytes``. An object that fails is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.errors import AppError, ErrorCode, NotFound, ValidationFailed
from wardrobe.core.logging import get_logger
from wardrobe.models import Task, TaskStatus, VerifiedUpload
from wardrobe.modules.storage import images, keys
from wardrobe.modules.storage.backend import ObjectInfo, ObjectNotFound, ObjectStorage
from wardrobe.modules.storage.expiring import ExpiringValues
from wardrobe.modules.storage.gc import object_keys_in

log = get_logger("wardrobe.storage.verification")

IMAGE_CONTENT_TYPES = frozenset(keys.EXTENSION_BY_CONTENT_TYPE)
# How long a grant's size bound is kept: well past its URL's expiry, for a client that finished
# sending just in time and completes a little later.
GRANT_MEMORY_SECONDS = 24 * 3600


def upload_invalid(reason: str, message: str) -> AppError:
    return AppError(ErrorCode.UPLOAD_INVALID, data={"reason": reason, "message": message}, detail=reason)


async def check_image(
    data: bytes, declared_content_type: str, max_pixels: int, max_decode_bytes: int
) -> images.ImageInfo:
    """``images.verify_image`` with its rejection as the client sees it (``UPLOAD_INVALID``)."""
    try:
        return await images.verify_image(data, declared_content_type, max_pixels, max_decode_bytes)
    except images.ImageRejected as exc:
        raise upload_invalid(exc.reason, exc.message) from None


def out(row: VerifiedUpload) -> dict[str, Any]:
    return {
        "object_key": row.object_key,
        "content_type": row.content_type,
        "size": row.size,
        "width": row.width,
        "height": row.height,
    }


async def record(
    session: AsyncSession, key: str, user_id: int, size: int, info: images.ImageInfo, etag: str | None = None
) -> VerifiedUpload:
    """The row for ``key`` (idempotent: a second verification of the same key keeps the first row)."""
    existing = await session.scalar(select(VerifiedUpload).where(VerifiedUpload.object_key == key))
    if existing is not None:
        return existing
    row = VerifiedUpload(
        object_key=key,
        user_id=user_id,
        size=size,
        content_type=info.content_type,
        width=info.width,
        height=info.height,
        etag=etag,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # A concurrent completion of the same key won; its row is as good as ours.
        found = await session.scalar(select(VerifiedUpload).where(VerifiedUpload.object_key == key))
        if found is None:
            raise
        return found
    return row


async def verified(session: AsyncSession, user_id: int, object_keys: Iterable[str]) -> dict[str, VerifiedUpload]:
    """The rows of those of ``object_keys`` that are verified uploads of ``user_id``."""
    wanted = sorted(set(object_keys))
    if not wanted:
        return {}
    rows = await session.scalars(
        select(VerifiedUpload).where(VerifiedUpload.object_key.in_(wanted), VerifiedUpload.user_id == user_id)
    )
    return {row.object_key: row for row in rows}


def still_verified(record: VerifiedUpload, info: ObjectInfo) -> bool:
    """Whether the object is still the one that was verified: the same size and, where the store
    has ETags, the same ETag (a replacement of the same size changes it)."""
    return info.size == record.size and (record.etag is None or info.etag == record.etag)


def _grant_key(object_key: str) -> str:
    return f"grant:{object_key}"


async def remember_grant(grants: ExpiringValues, object_key: str, max_size: int) -> None:
    await grants.set(_grant_key(object_key), str(int(max_size)).encode(), GRANT_MEMORY_SECONDS)


async def _size_bound(grants: ExpiringValues, object_key: str, default: int) -> int:
    raw = await grants.get(_grant_key(object_key))
    return min(int(raw), default) if raw is not None else default


def check_own_upload_key(user_id: int, object_key: str, field: str = "object_key") -> str:
    if keys.owner_of(object_key) != user_id or not object_key.startswith(f"{keys.UPLOADS}/"):
        raise ValidationFailed(field, "must be an object_key under your own uploads/")
    return object_key


async def complete_upload(
    session: AsyncSession,
    storage: ObjectStorage,
    grants: ExpiringValues,
    *,
    user_id: int,
    object_key: str,
    max_upload_bytes: int,
    max_pixels: int,
    max_decode_bytes: int,
) -> dict[str, Any]:
    """Verify an object the client sent to the bucket itself and record it; a second call for a
    verified key answers the same. A failing object is deleted (``UPLOAD_INVALID``); bytes after
    the end of the image (a polyglot's HTML) are cut off the stored object."""
    check_own_upload_key(user_id, object_key)
    existing = await verified(session, user_id, [object_key])
    if object_key in existing:
        return out(existing[object_key])
    info = await storage.head(object_key)
    if info is None:
        raise NotFound(detail="no object under this key: send the bytes first")
    bound = await _size_bound(grants, object_key, max_upload_bytes)
    try:
        if info.size > bound:
            raise upload_invalid("too_large", f"the object has more than {bound} bytes")
        if info.content_type not in IMAGE_CONTENT_TYPES:
            raise upload_invalid("unsupported_format", "send the bytes with Content-Type image/png, jpeg or webp")
        try:
            data = await storage.get(object_key)
        except ObjectNotFound:
            raise NotFound(detail="the object went away while it was verified") from None
        # Read back rather than trusted from HEAD: the object may have been replaced in between.
        if len(data) > bound:
            raise upload_invalid("too_large", f"the object has more than {bound} bytes")
        image = await check_image(data, info.content_type, max_pixels, max_decode_bytes)
        # The ETag recorded must be that of the bytes just checked: HEAD again, and if the object
        # was replaced between the first HEAD and the read, verify nothing (the client completes
        # again once it stopped writing).
        after = await storage.head(object_key)
        if after is None:
            raise NotFound(detail="the object went away while it was verified")
        if after.etag != info.etag or after.size != len(data):
            raise AppError(
                ErrorCode.CONFLICT,
                data={"reason": "changed_during_verification", "message": "the object changed while it was verified"},
                detail="changed_during_verification",
            )
    except AppError as exc:
        if exc.code is ErrorCode.UPLOAD_INVALID:
            # Nothing may use it, and nobody should pay to keep it.
            await storage.delete(object_key)
            log.info("upload_rejected", object_key=object_key, reason=exc.detail)
        raise
    size, etag = len(data), after.etag
    if image.length < len(data):
        size, etag = await _keep_image_only(storage, object_key, data[: image.length], info.content_type)
    row = await record(session, object_key, user_id, size, image, etag=etag)
    return out(row)


async def _keep_image_only(storage: ObjectStorage, key: str, image: bytes, content_type: str) -> tuple[int, str | None]:
    """Replace the object by its image alone; the size and ETag to record are those of this write
    (the PUT's own answer: a HEAD afterwards could already see a client's replacement)."""
    etag = await storage.put(key, image, content_type)
    if etag is None:
        after = await storage.head(key)
        etag = after.etag if after is not None else None
    log.info("upload_trimmed", object_key=key, kept=len(image))
    return len(image), etag


async def live_results(session: AsyncSession, storage: ObjectStorage, user_id: int, wanted: list[str]) -> set[str]:
    """Which of ``wanted`` are outputs of the user's own succeeded tasks that are neither deleted nor
    purged, and still in the store: the results a new task may take as inputs."""
    by_task = {key: keys.task_of_result(key) for key in wanted}
    ids = {public_id for public_id in by_task.values() if public_id is not None}
    if not ids:
        return set()
    rows = await session.execute(
        select(Task.public_id, Task.outputs).where(
            Task.user_id == user_id,
            Task.public_id.in_(ids),
            Task.status == TaskStatus.SUCCEEDED.value,
            Task.deleted_at.is_(None),
            Task.files_purged_at.is_(None),
        )
    )
    named = {public_id: set(object_keys_in(outputs)) for public_id, outputs in rows.all()}
    live = set()
    for key, public_id in by_task.items():
        if public_id is not None and key in named.get(public_id, ()) and await storage.head(key) is not None:
            live.add(key)
    return live
