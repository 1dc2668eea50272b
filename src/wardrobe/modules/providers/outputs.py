"""Vendor outputs copied into our storage.

A vendor's output URL is temporary and the vendor's; what a user gets is an object of ours. Each
URL is downloaded with ``SafeFetcher`` (public internet only, bounded in size and time), checked
like an upload (real PNG/JPEG/WebP, pixel cap, not truncated) and stored under a key that depends
only on *which* output it is:

```
results/{user_id}/{yyyy}/{mm}/{task}-{step}-{attempt}-{n}.{ext}     final outputs
tmp/{yyyy}/{mm}/{dd}/{task}-{step}-{attempt}-{n}.{ext}               intermediates (expire)
```

So a duplicate webhook, a poll retried after a crash, or two workers racing over the same job all
land on the same key, and the second one finds the object and downloads nothing. The attempt is in
the name because a retried step is a new vendor job with new outputs, which must not be mistaken
for the old ones; objects of abandoned attempts are left to the orphan sweep. The date segments
come from ``OutputTarget.at``, a time the caller fixes for the attempt (the step's ``started_at``),
never "now": a delivery just after midnight must compute the same key as one just before.

An object under such a key is complete and valid by construction — it is written only after the
checks, and ``put`` makes it appear atomically — so finding it is enough to reuse it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from wardrobe.modules.providers.base import ProviderError
from wardrobe.modules.providers.fetch import SafeFetcher
from wardrobe.modules.storage.backend import ObjectExists, ObjectStorage
from wardrobe.modules.storage.images import ImageRejected, verify_image
from wardrobe.modules.storage.keys import EXTENSION_BY_CONTENT_TYPE, RESULTS, TMP, InvalidKey, validate_key

__all__ = ["OutputLimits", "OutputTarget", "StoredOutput", "output_key_stem", "store_outputs"]

# ImageRejected.reason → ProviderError.code. None of them is retryable: the same URL serves the
# same bytes. (A transfer cut short is a protocol error in the fetcher, not "corrupt" here.)
_IMAGE_CODES = {
    "unsupported_format": "output_not_image",
    "type_mismatch": "output_not_image",
    "too_many_pixels": "output_too_many_pixels",
    "corrupt": "output_corrupt",
}
# Task ids are uuid4 hex, step ids ``[a-z][a-z0-9_]*``; anything else would bend the key layout.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONTENT_TYPE_BY_EXTENSION = {ext: content_type for content_type, ext in EXTENSION_BY_CONTENT_TYPE.items()}


@dataclass(frozen=True, slots=True)
class OutputTarget:
    """Whose outputs these are, and of which step attempt. ``at`` must be the same for every
    delivery of the same attempt's outputs (use the step's ``started_at``)."""

    user_id: int
    task_id: str
    step_id: str
    attempt: int
    at: datetime
    intermediate: bool = False


@dataclass(frozen=True, slots=True)
class OutputLimits:
    max_bytes: int = 32 * 1024 * 1024
    timeout_seconds: float = 60.0
    max_pixels: int = 40_000_000
    max_outputs: int = 16


@dataclass(frozen=True, slots=True)
class StoredOutput:
    key: str
    content_type: str
    size: int
    reused: bool  # an earlier delivery had stored it; nothing was downloaded this time


def output_key_stem(target: OutputTarget, n: int) -> str:
    """The key of output ``n`` of ``target`` without its extension (which depends on the bytes)."""
    at = target.at.astimezone(UTC)
    name = f"{target.task_id}-{target.step_id}-{int(target.attempt)}-{int(n)}"
    if target.intermediate:
        stem = f"{TMP}/{at:%Y}/{at:%m}/{at:%d}/{name}"
    else:
        stem = f"{RESULTS}/{int(target.user_id)}/{at:%Y}/{at:%m}/{name}"
    # Validated with a stand-in extension: task and step ids come from our own tables, but a key
    # that is not a key must fail here, not in the middle of a download.
    try:
        if not (_ID.match(target.task_id) and _ID.match(target.step_id)):
            raise InvalidKey("ids are non-empty runs of letters, digits, '_' and '-'")
        validate_key(f"{stem}.png")
    except InvalidKey:
        raise ProviderError("output_bad_target", "task or step id unfit for an object key") from None
    return stem


async def store_outputs(
    urls: Sequence[str],
    target: OutputTarget,
    *,
    fetcher: SafeFetcher,
    storage: ObjectStorage,
    limits: OutputLimits | None = None,
) -> list[StoredOutput]:
    """Copy the images at ``urls`` (in this order) into storage for ``target``; idempotent.

    Raises ``ProviderError``: the fetcher's ``output_*`` codes, ``output_not_image``,
    ``output_too_many_pixels``, ``output_corrupt``, ``output_too_many``. Outputs stored before a
    failure stay, and a retry of the same attempt reuses them.
    """
    limits = limits or OutputLimits()
    if len(urls) > limits.max_outputs:
        raise ProviderError("output_too_many", f"{len(urls)} outputs, at most {limits.max_outputs}")
    stems = [output_key_stem(target, n) for n in range(len(urls))]
    # Downloads run concurrently; the first failure cancels the rest.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(_store_one(url, stem, fetcher, storage, limits))
                for url, stem in zip(urls, stems, strict=True)
            ]
    except BaseExceptionGroup as exc:
        first = exc.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


async def _existing(storage: ObjectStorage, stem: str) -> StoredOutput | None:
    for info in await storage.list(f"{stem}.", limit=4):
        content_type = _CONTENT_TYPE_BY_EXTENSION.get(info.key[len(stem) + 1 :])
        if content_type is not None:
            return StoredOutput(key=info.key, content_type=content_type, size=info.size, reused=True)
    return None


async def _store_one(
    url: str, stem: str, fetcher: SafeFetcher, storage: ObjectStorage, limits: OutputLimits
) -> StoredOutput:
    existing = await _existing(storage, stem)
    if existing is not None:
        return existing
    downloaded = await fetcher.download(url, max_bytes=limits.max_bytes, timeout_seconds=limits.timeout_seconds)
    data = downloaded.data
    # The vendor's Content-Type is not believed (CDNs label PNGs as JPEG, or everything as
    # octet-stream): the bytes name their type, and verify_image checks it all the way.
    try:
        info = await verify_image(data, _sniff(data), limits.max_pixels)
    except ImageRejected as exc:
        raise ProviderError(_IMAGE_CODES.get(exc.reason, "output_not_image"), exc.message) from None
    key = f"{stem}.{EXTENSION_BY_CONTENT_TYPE[info.content_type]}"
    data = data[: info.length]  # the image alone: nothing a vendor appended after its end
    try:
        await storage.put(key, data, info.content_type, overwrite=False)
    except ObjectExists:
        # Another delivery of the same output won the race: same bytes, same key.
        return StoredOutput(key=key, content_type=info.content_type, size=len(data), reused=True)
    return StoredOutput(key=key, content_type=info.content_type, size=len(data), reused=False)


def _sniff(data: bytes) -> str:
    """The content type the leading bytes claim; ``verify_image`` then proves it (or refuses)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
