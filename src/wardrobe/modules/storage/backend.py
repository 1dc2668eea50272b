"""Object storage behind one interface, and its local-files backend.

``ObjectStorage`` is what the rest of the code base sees; ``s3.S3ObjectStorage`` implements it for
Tencent COS and other S3-compatible stores. ``LocalObjectStorage`` keeps objects under a directory
and serves presigned URLs through this API (``/api/v1/storage/objects/{key}``, see ``endpoints.py``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import heapq
import hmac
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode

import orjson

from wardrobe.modules.storage.keys import InvalidKey, validate_key, validate_prefix

OBJECTS_PATH = "/api/v1/storage/objects/"
DEFAULT_CONTENT_TYPE = "application/octet-stream"

__all__ = [
    "OBJECTS_PATH",
    "InvalidKey",
    "LocalObjectStorage",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStorage",
    "SignatureExpired",
    "SignatureInvalid",
    "SignedDownload",
    "SignedUpload",
    "UploadTarget",
]


class ObjectNotFound(KeyError):
    """No object under this key. A KeyError so callers that catch KeyError keep working."""


class ObjectExists(Exception):
    """``put(..., overwrite=False)`` found the key already taken."""


class SignatureInvalid(Exception):
    """A presigned URL that this store did not issue, or that was altered."""


class SignatureExpired(Exception):
    """A genuine presigned URL past its expiry."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str
    created: datetime
    # The store's entity tag (S3's ETag, quotes removed): it changes whenever the object is
    # replaced, even by one of the same size. None where the backend has none (local files).
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """How a client sends the bytes: one request with exactly these method, URL and headers."""

    method: str
    url: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignedUpload:
    content_type: str
    max_size: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignedDownload:
    filename: str | None
    expires_at: datetime


class ObjectStorage(Protocol):
    """The storage interface. Keys are validated by every implementation (``keys.validate_key``)."""

    async def put(self, key: str, data: bytes, content_type: str, *, overwrite: bool = True) -> str | None:
        """Store ``data``; with ``overwrite=False`` raise ``ObjectExists`` if the key is taken
        (the local backend atomically; S3 with ``If-None-Match: *`` where the store honours it,
        see ``S3ObjectStorage``). Returns the stored object's ETag where the store has them."""
        ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; ``ObjectNotFound`` if there is none."""
        ...

    async def head(self, key: str) -> ObjectInfo | None: ...

    async def delete(self, key: str) -> bool:
        """True if an object was deleted."""
        ...

    async def delete_many(self, keys: Iterable[str]) -> int:
        """How many objects were deleted (remote backends send batches of at most 1000; S3
        counts keys that did not exist too, as DeleteObjects reports them deleted)."""
        ...

    async def list(
        self, prefix: str, limit: int = 1000, *, start_after: str | None = None
    ) -> builtins.list[ObjectInfo]:
        """Up to ``limit`` objects whose key starts with ``prefix``, in key order, after
        ``start_after`` (pass the last key of a page to get the next one). S3 listings carry no
        content type: there it is ``application/octet-stream``; ``head`` has the real one."""
        ...

    def upload_target(self, key: str, content_type: str, max_size: int, expires_in: int) -> UploadTarget: ...

    def download_url(self, key: str, expires_in: int, filename: str | None = None) -> str: ...


# What a signature covers after (method, key), in this order; absent ones are signed as null.
_SIGNED_FIELDS = ("expires", "content_type", "max_size", "filename")


def _sign(key: bytes, fields: Sequence[str | None]) -> str:
    # Signed as a JSON array: unambiguous whatever the values contain (no delimiter to smuggle).
    message = orjson.dumps(["wardrobe-storage-v1", *fields])
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class LocalObjectStorage:
    """Objects as files under ``root``: ``root/{key}`` holds the bytes, ``root/.meta/{key}`` a JSON
    sidecar with the content type, ``root/.tmp/`` the files being written. Keys never have a
    segment starting with ".", so neither can collide with an object.

    Presigned URLs are our own HMAC-SHA256 code: this backend must mimic S3 presigned semantics
    (method, key, expiry, content type and size bound all authorised by one signature) for a store
    that has no server of its own, and no library does that for a local directory. The signature
    covers (method, key, expiry, content type, max size, download filename); it is checked with
    ``hmac.compare_digest`` before anything else in the URL is believed.
    """

    def __init__(
        self,
        root: Path,
        public_base_url: str,
        signing_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not signing_key:
            raise ValueError("LocalObjectStorage needs a signing key")
        self.root = Path(root)
        self.public_base_url = public_base_url.rstrip("/")
        self._signing_key = signing_key
        self._clock = clock

    # --- paths -------------------------------------------------------------------------------

    def _data_path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / ".meta" / validate_key(key)

    def _tmp_path(self) -> Path:
        # Same file system as the objects, so the final rename is atomic.
        directory = self.root / ".tmp"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / uuid.uuid4().hex

    # --- blocking parts, run in a thread -------------------------------------------------------

    def _put_sync(self, key: str, data: bytes, content_type: str, overwrite: bool) -> None:
        path, meta_path = self._data_path(key), self._meta_path(key)
        meta = orjson.dumps({"content_type": content_type, "size": len(data)})
        tmp_data, tmp_meta = self._tmp_path(), self._tmp_path()
        meta_written = done = False
        try:
            # The likely failures (a full disk) happen here, before anything visible changes.
            with tmp_data.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            path.parent.mkdir(parents=True, exist_ok=True)
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            if overwrite:
                tmp_meta.write_bytes(meta)
                os.replace(tmp_meta, meta_path)
            else:
                # The sidecar, created with O_EXCL, is the claim on the key: of two racing writers
                # exactly one creates it; the other gets FileExistsError. No check-then-act.
                try:
                    fd = os.open(meta_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    raise ObjectExists(key) from None
                with os.fdopen(fd, "wb") as fh:
                    fh.write(meta)
            meta_written = True
            # The data appears last and in one step: whoever sees the object sees all of it, with
            # its sidecar already complete.
            os.replace(tmp_data, path)
            done = True
        finally:
            if meta_written and not done and not path.exists():
                # A sidecar for an object that never appeared would hold the key for nobody.
                meta_path.unlink(missing_ok=True)
            tmp_data.unlink(missing_ok=True)
            tmp_meta.unlink(missing_ok=True)

    def _info_sync(self, key: str) -> ObjectInfo | None:
        try:
            st = self._data_path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        content_type = DEFAULT_CONTENT_TYPE
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, orjson.JSONDecodeError):
            meta = orjson.loads(self._meta_path(key).read_bytes())
            content_type = str(meta.get("content_type") or DEFAULT_CONTENT_TYPE)
        return ObjectInfo(key=key, size=st.st_size, content_type=content_type, created=_utc(st.st_mtime))

    def _get_sync(self, key: str) -> bytes:
        try:
            return self._data_path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def _delete_sync(self, key: str) -> bool:
        try:
            self._data_path(key).unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        # Only after the data is gone: a sidecar without data is invisible to readers.
        self._meta_path(key).unlink(missing_ok=True)
        return True

    def _walk(self, directory: Path, key_prefix: str, prefix: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            key = key_prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                below = key + "/"
                # Descend only where a key with this prefix can live.
                if below.startswith(prefix) or prefix.startswith(below):
                    yield from self._walk(Path(entry.path), below, prefix)
            elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                yield key

    def _list_sync(self, prefix: str, limit: int, start_after: str | None) -> builtins.list[ObjectInfo]:
        validate_prefix(prefix)
        directory, _, _ = prefix.rpartition("/")
        base = self.root / directory if directory else self.root
        keys: Iterable[str] = self._walk(base, f"{directory}/" if directory else "", prefix)
        if start_after is not None:
            keys = (k for k in keys if k > start_after)
        # nsmallest keeps memory at O(limit) however big the tree is.
        out = []
        for key in heapq.nsmallest(limit, keys):
            info = self._info_sync(key)
            if info is not None:
                out.append(info)
        return out

    # --- ObjectStorage ---------------------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str, *, overwrite: bool = True) -> str | None:
        validate_key(key)
        await asyncio.to_thread(self._put_sync, key, data, content_type, overwrite)
        return None  # local files have no ETag

    async def get(self, key: str) -> bytes:
        validate_key(key)
        return await asyncio.to_thread(self._get_sync, key)

    async def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        return await asyncio.to_thread(self._info_sync, key)

    async def delete(self, key: str) -> bool:
        validate_key(key)
        return await asyncio.to_thread(self._delete_sync, key)

    async def delete_many(self, keys: Iterable[str]) -> int:
        batch = [validate_key(k) for k in keys]
        return await asyncio.to_thread(lambda: sum(self._delete_sync(k) for k in batch))

    async def list(
        self, prefix: str, limit: int = 1000, *, start_after: str | None = None
    ) -> builtins.list[ObjectInfo]:
        if limit <= 0:
            return []
        return await asyncio.to_thread(self._list_sync, prefix, limit, start_after)

    # --- presigned URLs --------------------------------------------------------------------------

    def _url(self, key: str, params: dict[str, str]) -> str:
        # Keys and signed values use only URL-safe characters plus "/", which a query may carry
        # as is; the filename is percent-encoded.
        return f"{self.public_base_url}{OBJECTS_PATH}{key}?{urlencode(params, safe='/')}"

    def upload_target(self, key: str, content_type: str, max_size: int, expires_in: int) -> UploadTarget:
        validate_key(key)
        expires = str(int(self._clock()) + int(expires_in))
        size = str(int(max_size))
        signature = _sign(self._signing_key, ("PUT", key, expires, content_type, size, None))
        params = {"expires": expires, "content_type": content_type, "max_size": size, "signature": signature}
        return UploadTarget(
            method="PUT",
            url=self._url(key, params),
            headers={"Content-Type": content_type},
            expires_at=_utc(int(expires)),
        )

    def download_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        validate_key(key)
        expires = str(int(self._clock()) + int(expires_in))
        signature = _sign(self._signing_key, ("GET", key, expires, None, None, filename))
        params = {"expires": expires}
        if filename is not None:
            params["filename"] = filename
        params["signature"] = signature
        return self._url(key, params)

    def _check(self, method: str, key: str, query: Sequence[tuple[str, str]]) -> dict[str, str]:
        """The signed values of ``query`` once the signature over them is proven, else raise."""
        try:
            validate_key(key)
        except InvalidKey:
            raise SignatureInvalid("invalid key") from None
        values: dict[str, str] = {}
        for name, value in query:
            if name in _SIGNED_FIELDS or name == "signature":
                if name in values:
                    # A repeated parameter: which copy a proxy or framework picks is ambiguous.
                    raise SignatureInvalid(f"repeated {name}")
                values[name] = value
        provided = values.pop("signature", "")
        if "expires" not in values:
            raise SignatureInvalid("no expiry")
        signed = [values.get(name) for name in _SIGNED_FIELDS]
        expected = _sign(self._signing_key, (method, key, *signed))
        if not hmac.compare_digest(expected.encode(), provided.encode("utf-8", "replace")):
            raise SignatureInvalid("signature mismatch")
        # Believed only now. We issue canonical decimals, and the signature pins the exact string.
        expires = values["expires"]
        if not expires.isascii() or not expires.isdigit() or int(expires) <= self._clock():
            raise SignatureExpired(key)
        return values

    def check_upload(self, key: str, query: Sequence[tuple[str, str]]) -> SignedUpload:
        """What a presigned PUT authorises; ``SignatureInvalid`` or ``SignatureExpired`` otherwise."""
        values = self._check("PUT", key, query)
        if "content_type" not in values or not values.get("max_size", "").isdigit():
            raise SignatureInvalid("not an upload signature")
        return SignedUpload(
            content_type=values["content_type"],
            max_size=int(values["max_size"]),
            expires_at=_utc(int(values["expires"])),
        )

    def check_download(self, key: str, query: Sequence[tuple[str, str]]) -> SignedDownload:
        values = self._check("GET", key, query)
        return SignedDownload(filename=values.get("filename"), expires_at=_utc(int(values["expires"])))


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
