"""The storage dependency, and how settings turn into a backend."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wardrobe.core.infra import Infra
from wardrobe.modules.auth.deps import InfraDep
from wardrobe.modules.storage.backend import LocalObjectStorage, ObjectStorage
from wardrobe.settings import Settings


def build_storage(settings: Settings) -> ObjectStorage:
    """The configured backend (only "local" exists so far; COS and S3 plug in here)."""
    if settings.storage_backend != "local":
        raise ValueError(f"unknown storage backend {settings.storage_backend!r}")
    return LocalObjectStorage(
        root=settings.storage_local_root,
        public_base_url=settings.storage_public_base_url,
        signing_key=settings.storage_signing_key.get_secret_value().encode(),
    )


def storage_of(infra: Infra) -> ObjectStorage:
    """The process's one storage instance (built with the rest of ``Infra``)."""
    return infra.storage


async def get_storage(infra: InfraDep) -> ObjectStorage:
    return storage_of(infra)


StorageDep = Annotated[ObjectStorage, Depends(get_storage)]
