"""HTTP routes of uploads and of the local backend's presigned URLs.

``POST /api/v1/uploads`` hands out a presigned PUT; with the local backend that URL points at
``/api/v1/storage/objects/{key}`` below, which plays the bucket: no bearer token, the signature in
the query authorises exactly one kind of request, and the bytes are verified on arrival. With COS
or S3 the URL points at the bucket, these two routes answer 404, and the client calls
``POST /api/v1/uploads/complete`` to have the object verified. ``POST /api/v1/uploads/credentials``
hands out COS STS keys limited to the user's ``uploads/`` prefix where enabled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from wardrobe.core.deps import LimiterDep, SessionDep, SettingsDep, part
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.principal import CurrentUser, Uploader
from wardrobe.modules.storage import service, verification
from wardrobe.modules.storage.backend import OBJECTS_PATH
from wardrobe.modules.storage.deps import StorageDep
from wardrobe.modules.storage.schemas import (
    StoredObjectOut,
    UploadComplete,
    UploadCreate,
    UploadCredentialsOut,
    UploadOut,
)

router = APIRouter(tags=["storage"])


def _query_doc(name: str, description: str, *, required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": {"type": "string"}, "description": description}


_SIGNATURE_DOC = _query_doc("signature", "HMAC-SHA256 over the method, key and the other signed parameters")
_EXPIRES_DOC = _query_doc("expires", "Unix time after which the URL is refused")
_IMAGE_CONTENT = {ct: {"schema": {"type": "string", "format": "binary"}} for ct in sorted(service.INLINE_CONTENT_TYPES)}


# What every download carries: browsers take the type as declared and never render a download as a
# page of this origin; only the client's own cache keeps it, while the URL is valid.
_DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": {"required": True, "schema": {"const": "nosniff"}},
    "Content-Disposition": {
        "required": True,
        "schema": {"type": "string", "pattern": "^(inline|attachment); "},
        "description": "Images inline under the key's name, anything else (or a signed filename) as an attachment",
    },
    "Cache-Control": {"required": True, "schema": {"type": "string", "pattern": "^private, max-age=[0-9]+$"}},
}


# Grants' size bounds and COS STS upload credentials: only the API hands them out.
UploadsDep = Annotated[service.UploadServices, Depends(part(service.UploadServices))]


@router.post(
    "/api/v1/uploads",
    summary="Get a presigned URL to upload one image",
    description="Then send the bytes with the returned `method`, `url` and `headers` before `expires_at`; "
    "use `object_key` as a task's image input. PNG, JPEG or WebP; `size` is the exact byte count. With COS "
    "direct upload credentials enabled, `upload` also carries `credentials`, `bucket`, `region` and `key` "
    "(the COS STS form): PUT the bytes to `key` with them instead if you like. With COS or S3 the bytes go "
    "straight to the bucket: call `POST /api/v1/uploads/complete` afterwards (the local backend verifies "
    "them on arrival).",
    response_model=Envelope[UploadOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.RATE_LIMITED),
)
async def create_upload(
    body: UploadCreate,
    principal: Uploader,
    storage: StorageDep,
    limiter: LimiterDep,
    settings: SettingsDep,
    uploads: UploadsDep,
) -> OrjsonResponse:
    grant = await service.create_upload(storage, limiter, settings, uploads, principal.id, body)
    return ok(grant.as_dict())


@router.post(
    "/api/v1/uploads/complete",
    summary="Verify an upload sent straight to the bucket",
    description="Reads the object back and checks it: at most the grant's `max_size` bytes (the global "
    "upload limit for keys chosen under upload credentials), a PNG, JPEG or WebP image of the Content-Type it "
    "was stored with, within the pixel cap. A failing object is deleted (`UPLOAD_INVALID`, `data.reason` one "
    "of `too_large`, `unsupported_format`, `type_mismatch`, `too_many_pixels`, `corrupt`). Only then may a "
    "task use the key. Completing a verified key again answers the same; uploads through the local "
    "backend are verified already. An object replaced while it was being checked answers `CONFLICT` "
    "(`data.reason` `changed_during_verification`): complete again once the upload is finished.",
    response_model=Envelope[StoredObjectOut],
    responses=errors(
        *AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND, ErrorCode.UPLOAD_INVALID, ErrorCode.CONFLICT
    ),
)
async def complete_upload(
    body: UploadComplete,
    principal: Uploader,
    storage: StorageDep,
    settings: SettingsDep,
    session: SessionDep,
    uploads: UploadsDep,
) -> OrjsonResponse:
    stored = await verification.complete_upload(
        session,
        storage,
        uploads.grants,
        user_id=principal.id,
        object_key=body.object_key,
        max_upload_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        max_decode_bytes=settings.max_image_decode_bytes,
    )
    return ok(stored)


@router.post(
    "/api/v1/uploads/credentials",
    summary="Get temporary COS keys that may only write under your uploads/ prefix",
    description="Tencent COS with STS enabled only (else `CONFLICT` with `data.reason` `sts_disabled`: use the "
    "presigned PUT of "
    "`POST /api/v1/uploads`). The keys allow PutObject, PostObject and multipart uploads under `prefix` and "
    "nothing else (no reads); pass `session_token` as the security token (S3 SDKs: `aws_session_token`). "
    "The same keys come back while 5+ minutes of their life remain. Complete each object with "
    "`POST /api/v1/uploads/complete` before using it in a task.",
    response_model=Envelope[UploadCredentialsOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.CONFLICT, ErrorCode.RATE_LIMITED, ErrorCode.DEPENDENCY_UNAVAILABLE),
)
async def create_upload_credentials(
    principal: CurrentUser, limiter: LimiterDep, settings: SettingsDep, uploads: UploadsDep
) -> OrjsonResponse:
    credentials = await service.upload_credentials(limiter, settings, uploads, principal.id)
    return ok(credentials.as_dict())


@router.put(
    OBJECTS_PATH + "{key:path}",
    status_code=201,
    summary="Upload bytes to a presigned URL (local storage backend)",
    description="Authorised by the signature alone. `Content-Type` must be the signed one and the body at most "
    "`max_size` bytes; the body must be a complete PNG, JPEG or WebP image of the declared type within the "
    "pixel cap (`UPLOAD_INVALID`, with `data.reason` one of `unsupported_format`, `type_mismatch`, "
    "`too_many_pixels`, `corrupt`). A key is written once: a replay is `CONFLICT`.",
    response_model=Envelope[StoredObjectOut],
    responses=errors(
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.SIGNED_URL_EXPIRED,
        ErrorCode.NOT_FOUND,
        ErrorCode.CONFLICT,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.UPLOAD_INVALID,
        ErrorCode.MALFORMED_REQUEST,  # a Content-Length that is not a number
    ),
    openapi_extra={
        "parameters": [
            _EXPIRES_DOC,
            _query_doc("content_type", "The signed Content-Type"),
            _query_doc("max_size", "The signed upper bound of the body, in bytes"),
            _SIGNATURE_DOC,
        ],
        "requestBody": {"required": True, "content": _IMAGE_CONTENT},
    },
)
async def put_object(
    key: str, request: Request, shared: StorageDep, settings: SettingsDep, session: SessionDep
) -> OrjsonResponse:
    storage = service.local_backend(shared)
    signed = service.authorize_upload(
        storage, key, request.query_params.multi_items(), request.headers.get("content-type")
    )
    await service.ensure_not_uploaded(storage, key)
    data = await _read_body(request, signed.max_size)
    stored = await service.store_upload(
        session,
        storage,
        key,
        signed,
        data,
        max_pixels=settings.max_image_pixels,
        max_decode_bytes=settings.max_image_decode_bytes,
    )
    return ok(stored, status_code=201)


@router.get(
    OBJECTS_PATH + "{key:path}",
    summary="Download an object through an expiring signed URL (local storage backend)",
    description="Signed URLs come from the API (e.g. a task's `outputs[].url`); nothing is public without one.",
    response_class=Response,
    responses={
        200: {"description": "The object's bytes", "content": _IMAGE_CONTENT, "headers": _DOWNLOAD_HEADERS},
        **errors(ErrorCode.PERMISSION_DENIED, ErrorCode.SIGNED_URL_EXPIRED, ErrorCode.NOT_FOUND),
    },
    openapi_extra={
        "parameters": [
            _EXPIRES_DOC,
            _query_doc(
                "filename",
                "Download name (Content-Disposition: attachment), if signed; without it images are served inline "
                "under the key's own name",
                required=False,
            ),
            _SIGNATURE_DOC,
        ]
    },
)
async def get_object(key: str, request: Request, shared: StorageDep) -> Response:
    storage = service.local_backend(shared)
    signed = service.authorize_download(storage, key, request.query_params.multi_items())
    download = await service.read_download(storage, key, signed)
    # Cacheable by the browser (never a shared cache) for as long as this URL is valid.
    max_age = max(0, int((signed.expires_at - datetime.now(UTC)).total_seconds()))
    headers = {
        "Cache-Control": f"private, max-age={max_age}",
        # The browser must take the declared type as it is, never guess another from the bytes.
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": download.disposition,
    }
    return Response(download.data, media_type=download.content_type, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` — announced or streamed."""
    # The connection is closed after a 413: the rest of the body was never read.
    too_large = AppError(ErrorCode.PAYLOAD_TOO_LARGE, headers={"Connection": "close"})
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise AppError(ErrorCode.MALFORMED_REQUEST, detail="bad Content-Length")
        if int(declared) > limit:
            raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)
