"""Object keys: what a valid key is, and the layout that separates uploads, results and
intermediates.

```
uploads/{user_id}/{yyyy}/{mm}/{uuid}.{ext}      what a user sent (presigned PUT)
results/{user_id}/{yyyy}/{mm}/{name}.{ext}      what a pipeline produced for a user
tmp/{yyyy}/{mm}/{dd}/{uuid}.{ext}               intermediates; expire after a day
```

The year/month (and, for ``tmp/``, day) segments let lifecycle rules and orphan sweeps work on a
prefix instead of listing everything. Every backend validates keys with ``validate_key``, so a key
that reaches a file system or a bucket is never a path trick.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

UPLOADS = "uploads"
RESULTS = "results"
TMP = "tmp"

# S3 and COS allow 1024 bytes; 255 is NAME_MAX of the common local file systems.
MAX_KEY_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255

# A segment never starts with "." — that rules out "." and ".." (traversal) and hidden names, which
# the local backend keeps for its own bookkeeping (.tmp/, .meta/) so they cannot collide with keys.
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
_KEY = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT})*$")
# A list prefix may stop anywhere: mid-segment or right after a "/".
_PREFIX = re.compile(rf"^(?:{_SEGMENT}/)*(?:{_SEGMENT})?$")
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$")
_EXT = re.compile(r"^[a-z0-9]{1,10}$")
_OWNED = re.compile(rf"^(?:{UPLOADS}|{RESULTS})/([1-9][0-9]{{0,18}})/")
# A result's name starts with its task's public id (uuid4 hex): "{task}-{step}[-{attempt}-{n}]".
_RESULT_TASK = re.compile(rf"^{RESULTS}/[1-9][0-9]{{0,18}}/[0-9]{{4}}/[0-9]{{2}}/([0-9a-f]{{32}})-[^/]+$")

EXTENSION_BY_CONTENT_TYPE: dict[str, str] = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
CONTENT_TYPE_BY_EXTENSION: dict[str, str] = {ext: ct for ct, ext in EXTENSION_BY_CONTENT_TYPE.items()}


class InvalidKey(ValueError):
    """A key that no backend accepts."""


def is_valid_key(key: str) -> bool:
    if not key or len(key) > MAX_KEY_LENGTH or not _KEY.match(key):
        return False
    return all(len(segment) <= MAX_SEGMENT_LENGTH for segment in key.split("/"))


def validate_key(key: str) -> str:
    if not is_valid_key(key):
        raise InvalidKey("invalid object key")
    return key


def validate_prefix(prefix: str) -> str:
    if len(prefix) > MAX_KEY_LENGTH or not _PREFIX.match(prefix):
        raise InvalidKey("invalid key prefix")
    return prefix


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _ext(ext: str) -> str:
    if not _EXT.match(ext):
        raise InvalidKey("invalid extension")
    return ext


def upload_key(user_id: int, ext: str, *, now: datetime | None = None) -> str:
    """A fresh, unguessable key for one upload by ``user_id``."""
    at = _now(now)
    return f"{UPLOADS}/{int(user_id)}/{at:%Y}/{at:%m}/{uuid.uuid4().hex}.{_ext(ext)}"


def result_key(user_id: int, name: str, ext: str, *, now: datetime | None = None) -> str:
    """The key of a result; ``name`` (e.g. "{task}-{step}") makes a re-run overwrite, not pile up."""
    if not _NAME.match(name):
        raise InvalidKey("invalid result name")
    at = _now(now)
    return f"{RESULTS}/{int(user_id)}/{at:%Y}/{at:%m}/{name}.{_ext(ext)}"


def tmp_key(ext: str, *, now: datetime | None = None) -> str:
    """An intermediate; the day segment is what the one-day expiry rule matches on."""
    at = _now(now)
    return f"{TMP}/{at:%Y}/{at:%m}/{at:%d}/{uuid.uuid4().hex}.{_ext(ext)}"


def owner_of(key: str) -> int | None:
    """The user an ``uploads/`` or ``results/`` key belongs to; None for anything else (including
    invalid keys and ``tmp/``). Only canonical ids match: "uploads/07/..." is nobody's."""
    if not is_valid_key(key):
        return None
    match = _OWNED.match(key)
    return int(match.group(1)) if match else None


def task_of_result(key: str) -> str | None:
    """The public id of the task that produced a ``results/`` key; None for anything else."""
    if not is_valid_key(key):
        return None
    match = _RESULT_TASK.match(key)
    return match.group(1) if match else None
