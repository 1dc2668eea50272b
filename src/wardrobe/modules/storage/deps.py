"""The storage dependency, and how settings turn into a backend."""

from __future__ import annotations

import sys
from typing import Annotated

from fastapi import Depends

from wardrobe.core.deps import part
from wardrobe.modules.storage.backend import LocalObjectStorage, ObjectStorage
from wardrobe.settings import Settings

# s3.py brings botocore and aiobotocore (~50 MiB in every process): imported only for an S3 backend.
_S3_MODULE = "wardrobe.modules.storage.s3"


def build_storage(settings: Settings) -> ObjectStorage:
    """The configured backend: local files, or a bucket of an S3-compatible store (COS included)."""
    if settings.storage_backend == "s3":
        from wardrobe.modules.storage.s3 import S3Credentials, S3ObjectStorage  # see _S3_MODULE

        return S3ObjectStorage(
            bucket=settings.storage_s3_bucket,
            region=settings.storage_s3_region,
            credentials=S3Credentials(
                access_key_id=settings.storage_s3_access_key_id,
                secret_access_key=settings.storage_s3_secret_access_key.get_secret_value(),
                session_token=settings.storage_s3_session_token.get_secret_value() or None,
            ),
            endpoint_url=settings.storage_s3_endpoint_url or None,
            addressing_style=settings.storage_s3_addressing_style,
            conditional_put=settings.storage_s3_conditional_put,
        )
    if settings.storage_backend != "local":
        raise ValueError(f"unknown storage backend {settings.storage_backend!r}")
    return LocalObjectStorage(
        root=settings.storage_local_root,
        public_base_url=settings.storage_public_base_url,
        signing_key=settings.storage_signing_key.get_secret_value().encode(),
    )


async def close_storage(storage: ObjectStorage) -> None:
    """Release what the backend holds (the S3 client's connection pool; local files hold nothing).
    Called once at shutdown, with the process's other parts."""
    # Without s3.py loaded no S3 backend exists; importing it here would load botocore to learn that.
    s3 = sys.modules.get(_S3_MODULE)
    if s3 is not None and isinstance(storage, s3.S3ObjectStorage):
        await storage.aclose()


# The process's one storage instance (built with the rest of its parts).
StorageDep = Annotated[ObjectStorage, Depends(part(ObjectStorage))]
