"""Lifecycle rules: intermediates under ``tmp/`` expire after a day, and so do multipart
uploads never completed. On an S3-compatible bucket (Tencent COS included) the store enforces them
once ``wardrobe storage apply-lifecycle`` has put them; the local backend has no such machinery, so
the scheduler enforces the same rules (``expire_local``).

Unreferenced uploads are *not* a bucket rule: a lifecycle rule cannot tell a used upload from an
abandoned one. The orphan cleanup (gc.py) deletes those after ``WARDROBE_STORAGE_GC_GRACE_DAYS``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from wardrobe.models.base import utcnow
from wardrobe.modules.storage.backend import LocalObjectStorage, ObjectStorage
from wardrobe.modules.storage.keys import TMP

TMP_DAYS = 1
ABORT_MULTIPART_DAYS = 1


def wanted_rules() -> list[dict[str, Any]]:
    """The bucket rules, in the S3 ``Rules`` shape (COS reads the same XML)."""
    return [
        {
            "ID": "wardrobe-tmp-expires",
            "Filter": {"Prefix": f"{TMP}/"},
            "Status": "Enabled",
            "Expiration": {"Days": TMP_DAYS},
        },
        {
            "ID": "wardrobe-abort-incomplete-uploads",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
        },
    ]


def _normalised(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What matters of each rule, comparable whatever the store adds or reorders."""
    keep = ("ID", "Filter", "Status", "Expiration", "AbortIncompleteMultipartUpload")
    return sorted(({k: r[k] for k in keep if k in r} for r in rules), key=lambda r: str(r.get("ID")))


class LifecycleNotApplied(Exception):
    """The store reads back other rules than the ones put."""


async def apply(storage: ObjectStorage) -> list[dict[str, Any]]:
    """Put the rules on the bucket and read them back; returns what the store reports. Other rules
    the bucket had are replaced (S3 has one lifecycle configuration per bucket)."""
    # Here, not at the top: s3.py brings botocore (~50 MiB), and the scheduler imports this module.
    from wardrobe.modules.storage.s3 import S3ObjectStorage

    if isinstance(storage, S3ObjectStorage):
        await storage.put_lifecycle(wanted_rules())
        applied = await storage.get_lifecycle()
        if _normalised(applied) != _normalised(wanted_rules()):
            raise LifecycleNotApplied(f"the bucket reports {applied!r}")
        return applied
    # The local backend enforces the same rules from the scheduler (expire_local).
    return wanted_rules()


async def expire_local(storage: ObjectStorage, *, now: datetime | None = None) -> int:
    """The local backend's ``tmp/`` expiry: intermediates older than a day go. Does nothing on a
    bucket, whose own rule does it."""
    if not isinstance(storage, LocalObjectStorage):
        return 0
    cutoff = (now or utcnow()) - timedelta(days=TMP_DAYS)
    expired = 0
    start_after: str | None = None
    while True:
        page = await storage.list(f"{TMP}/", 1000, start_after=start_after)
        if not page:
            return expired
        start_after = page[-1].key
        old = [info.key for info in page if info.created < cutoff]
        if old:
            expired += await storage.delete_many(old)
