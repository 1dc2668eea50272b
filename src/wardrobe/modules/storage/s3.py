"""The S3-compatible backend: Tencent COS through its S3 API, AWS S3, MinIO and the like.

One long-lived aiobotocore client per process, created on first use (it needs a running event loop)
and closed by ``aclose()``. Presigned URLs come from a plain botocore client with the same settings:
presigning is pure computation, and the ``ObjectStorage`` interface keeps ``upload_target`` and
``download_url`` synchronous, while aiobotocore's ``generate_presigned_url`` is a coroutine.

Nothing is made public: objects get no ACL (they inherit the bucket's, private), and readers get
expiring presigned GETs.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import threading
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import botocore.session
from aiobotocore.session import get_session
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError

from wardrobe.modules.storage.backend import (
    DEFAULT_CONTENT_TYPE,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    UploadTarget,
)
from wardrobe.modules.storage.keys import CONTENT_TYPE_BY_EXTENSION, validate_key, validate_prefix

# The Content-Type and Content-Disposition the local backend serves too: one rule for both backends.
from wardrobe.modules.storage.service import served_as

AddressingStyle = Literal["virtual", "path"]

# DeleteObjects takes at most this many keys per call (S3 and COS alike).
MAX_DELETE_BATCH = 1000
# ListObjectsV2 returns at most this many keys per page.
MAX_LIST_PAGE = 1000
# SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


class DeleteFailed(Exception):
    """Some keys of a ``delete_many`` were refused by the store (the others were deleted)."""

    def __init__(self, deleted: int, failed: list[tuple[str, str]]) -> None:
        sample = ", ".join(f"{key} ({code})" for key, code in failed[:5])
        super().__init__(f"{len(failed)} keys not deleted: {sample}")
        self.deleted = deleted
        self.failed = failed


@dataclass(frozen=True, slots=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None  # STS temporary credentials


def _content_md5_instead_of_crc(request: AWSRequest, **_: Any) -> None:
    """DeleteObjects must carry a body checksum. botocore >= 1.36 sends CRC32 headers only, which
    COS and other non-AWS stores do not accept (their DeleteObjects asks for Content-MD5): send the
    MD5 and drop the CRC headers. Runs before signing, so the signature covers the header."""
    body = request.body or b""
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    for name in list(request.headers.keys()):
        lowered = name.lower()
        if lowered.startswith("x-amz-checksum-") or lowered == "x-amz-sdk-checksum-algorithm":
            del request.headers[name]
    request.headers["Content-MD5"] = base64.b64encode(digest).decode("ascii")


_PRESIGN_SESSION_LOCK = threading.Lock()
_presign_session: botocore.session.Session | None = None


def _presigner(client_args: dict[str, Any]) -> Any:
    """A sync client from the process's one botocore session: the session caches the parsed S3
    service model (~100 ms to load), so further backends (tests build many) get theirs at once.
    Sessions are not thread-safe, hence the lock."""
    global _presign_session
    with _PRESIGN_SESSION_LOCK:
        if _presign_session is None:
            _presign_session = botocore.session.get_session()
        return _presign_session.create_client(**client_args)


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _etag(raw: object) -> str | None:
    """S3 sends the ETag quoted (``"9e10…"``); a store that sends none gives None."""
    if not raw:
        return None
    return str(raw).strip('"') or None


class S3ObjectStorage:
    """``ObjectStorage`` on one bucket of an S3-compatible store.

    Differences from the local backend, all forced by the S3 API:

    - ``put(..., overwrite=False)`` first asks HEAD (refusing without sending the body), then PUTs
      with ``If-None-Match: *`` when ``conditional_put`` is on, which AWS S3 and MinIO settle
      atomically (412 -> ``ObjectExists``). A store that ignores that header (or with
      ``conditional_put`` off) is only protected by the HEAD: two writers racing between their
      HEAD and their PUT can both succeed, the last one winning. Our create-only writes use fresh
      random keys (uploads) or write the same bytes (a repeated vendor delivery), so that race
      loses nothing there.
    - ``delete`` asks HEAD first, because DeleteObject answers 204 whether or not the key existed.
    - ``delete_many`` counts what the store reports deleted; DeleteObjects reports keys that did
      not exist as deleted too, so that count can exceed the objects really removed.
    - ``list`` reports ``application/octet-stream`` as the content type: ListObjectsV2 does not
      return it (``head`` does), and one HEAD per listed key would make listings N+1.
    - ``upload_target`` cannot bound the size: a presigned PUT signs the Content-Type but S3 has no
      "at most N bytes" condition for it, so ``max_size`` is enforced when the upload is verified.
    """

    def __init__(
        self,
        *,
        bucket: str,
        region: str,
        credentials: S3Credentials,
        endpoint_url: str | None = None,
        addressing_style: AddressingStyle = "virtual",
        conditional_put: bool = True,
    ) -> None:
        if not bucket:
            raise ValueError("S3ObjectStorage needs a bucket")
        self.bucket = bucket
        self._conditional_put = conditional_put
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            # boto3 >= 1.36 adds CRC checksum headers to every upload by default; non-AWS stores
            # (COS among them) refuse them. Only where the API demands one (see above).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=5,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 3},
        )
        self._client_args: dict[str, Any] = {
            "service_name": "s3",
            "region_name": region or None,
            "endpoint_url": endpoint_url or None,
            "aws_access_key_id": credentials.access_key_id,
            "aws_secret_access_key": credentials.secret_access_key,
            "aws_session_token": credentials.session_token or None,
            "config": config,
        }
        # Sync, for presigning only: it never opens a connection (see the module docstring).
        self._presigner: Any = _presigner(self._client_args)
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    # --- the client ------------------------------------------------------------------------------

    async def _s3(self) -> Any:
        client = self._client
        if client is None:
            async with self._lock:
                if self._client is None:
                    stack = AsyncExitStack()
                    created = await stack.enter_async_context(get_session().create_client(**self._client_args))
                    created.meta.events.register("before-sign.s3.DeleteObjects", _content_md5_instead_of_crc)
                    created.meta.events.register(
                        "before-sign.s3.PutBucketLifecycleConfiguration", _content_md5_instead_of_crc
                    )
                    self._stack, self._client = stack, created
                client = self._client
        return client

    async def aclose(self) -> None:
        """Close the connection pool. A later call would open a new client."""
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # --- bucket lifecycle (rules in lifecycle.py) ----------------------------------------------

    async def put_lifecycle(self, rules: list[dict[str, Any]]) -> None:
        """Replace the bucket's lifecycle configuration with ``rules`` (S3 ``Rules`` shape)."""
        s3 = await self._s3()
        await s3.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration={"Rules": rules})

    async def get_lifecycle(self) -> list[dict[str, Any]]:
        """The bucket's rules as the store reports them ([] when it has none)."""
        s3 = await self._s3()
        try:
            response = await s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) == "NoSuchLifecycleConfiguration":
                return []
            raise
        return list(response.get("Rules", []))

    # --- ObjectStorage -----------------------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str, *, overwrite: bool = True) -> str | None:
        validate_key(key)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data, "ContentType": content_type}
        if not overwrite:
            if await self.head(key) is not None:
                raise ObjectExists(key)
            if self._conditional_put:
                params["IfNoneMatch"] = "*"
        s3 = await self._s3()
        try:
            response = await s3.put_object(**params)
        except ClientError as exc:
            # 412: the key was taken meanwhile; 409: another conditional write on it is in flight.
            if not overwrite and _status(exc) in (409, 412):
                raise ObjectExists(key) from None
            raise
        return _etag(response.get("ETag"))

    async def get(self, key: str) -> bytes:
        validate_key(key)
        s3 = await self._s3()
        try:
            response = await s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            # By code, not status: a 404 NoSuchBucket is a misconfiguration, not a missing object.
            if _code(exc) == "NoSuchKey":
                raise ObjectNotFound(key) from None
            raise
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        s3 = await self._s3()
        try:
            response = await s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            # Only 404 means "absent"; a 403 (no permission) must not pass for a free key.
            if _status(exc) == 404:
                return None
            raise
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            content_type=response.get("ContentType") or DEFAULT_CONTENT_TYPE,
            created=response["LastModified"].astimezone(UTC),
            etag=_etag(response.get("ETag")),
        )

    async def delete(self, key: str) -> bool:
        if await self.head(key) is None:
            return False
        s3 = await self._s3()
        await s3.delete_object(Bucket=self.bucket, Key=key)
        return True

    async def delete_many(self, keys: Iterable[str]) -> int:
        batch = list(dict.fromkeys(validate_key(k) for k in keys))  # each key once, in order
        if not batch:
            return 0
        s3 = await self._s3()
        deleted = 0
        failed: list[tuple[str, str]] = []
        for start in range(0, len(batch), MAX_DELETE_BATCH):
            chunk = batch[start : start + MAX_DELETE_BATCH]
            response = await s3.delete_objects(
                Bucket=self.bucket,
                # Quiet: the answer lists only failures, not 1000 successes.
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )
            errors = response.get("Errors") or []
            failed.extend((str(e.get("Key")), str(e.get("Code"))) for e in errors)
            deleted += len(chunk) - len(errors)
        if failed:
            raise DeleteFailed(deleted, failed)
        return deleted

    async def list(
        self, prefix: str, limit: int = 1000, *, start_after: str | None = None
    ) -> builtins.list[ObjectInfo]:
        validate_prefix(prefix)
        if limit <= 0:
            return []
        s3 = await self._s3()
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after is not None:
            params["StartAfter"] = start_after
        out: builtins.list[ObjectInfo] = []
        while len(out) < limit:
            params["MaxKeys"] = min(MAX_LIST_PAGE, limit - len(out))
            response = await s3.list_objects_v2(**params)
            out.extend(
                ObjectInfo(
                    key=item["Key"],
                    size=int(item["Size"]),
                    content_type=DEFAULT_CONTENT_TYPE,
                    created=item["LastModified"].astimezone(UTC),
                    etag=_etag(item.get("ETag")),
                )
                for item in response.get("Contents") or []
            )
            if not response.get("IsTruncated"):
                break
            params["ContinuationToken"] = response["NextContinuationToken"]
        return out[:limit]

    # --- presigned URLs --------------------------------------------------------------------------

    def _presign(self, operation: str, params: dict[str, Any], expires_in: int, method: str) -> tuple[str, datetime]:
        if not 0 < int(expires_in) <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires_in must be 1..{MAX_PRESIGN_SECONDS} seconds")
        url: str = self._presigner.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=int(expires_in), HttpMethod=method
        )
        # The expiry is what the store will apply: the signed date plus the signed lifetime.
        signed_at = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
        start = datetime.strptime(signed_at, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return url, start + timedelta(seconds=int(expires_in))

    def upload_target(self, key: str, content_type: str, max_size: int, expires_in: int) -> UploadTarget:
        """A presigned PUT. Content-Type is a signed header (another one is refused by the store);
        ``max_size`` cannot be signed (see the class docstring).

        With ``conditional_put`` the URL is create-only: ``If-None-Match: *`` is signed too, so
        once the bytes have landed (and been verified) the same URL cannot replace them while it
        lives; without it, a same-size replacement would go unnoticed until the task reads it."""
        validate_key(key)
        params: dict[str, Any] = {"Key": key, "ContentType": content_type}
        headers = {"Content-Type": content_type}
        if self._conditional_put:
            params["IfNoneMatch"] = headers["If-None-Match"] = "*"
        url, expires_at = self._presign("put_object", params, expires_in, "PUT")
        return UploadTarget(method="PUT", url=url, headers=headers, expires_at=expires_at)

    def download_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        """A presigned GET whose answer carries our Content-Type and Content-Disposition (signed
        response-content-type/-disposition overrides), whatever the object was stored with. A bucket
        cannot be told to send ``X-Content-Type-Options``; the stored bytes are the image alone."""
        validate_key(key)
        stored_type = CONTENT_TYPE_BY_EXTENSION.get(key.rsplit(".", 1)[-1], DEFAULT_CONTENT_TYPE)
        content_type, disposition = served_as(key, stored_type, filename)
        params: dict[str, Any] = {
            "Key": key,
            "ResponseContentType": content_type,
            "ResponseContentDisposition": disposition,
        }
        url, _ = self._presign("get_object", params, expires_in, "GET")
        return url
