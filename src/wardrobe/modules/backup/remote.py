"""Archives in an S3-compatible bucket (Tencent COS through its S3 API, AWS S3, MinIO): uploaded in
parts and downloaded in chunks, never whole in memory. The endpoint, region, keys and addressing
style are the object storage's (``WARDROBE_STORAGE_S3_*``); the bucket and prefix are the backups'
own, so a bucket with other rules (versioning, object lock, another region) can hold them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from wardrobe.settings import Settings

PART_BYTES = 16 * 1024 * 1024  # S3 and COS take parts of 5 MiB to 5 GiB, at most 10,000 of them
READ_CHUNK = 1024 * 1024


def parse_s3_url(value: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    if not value.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {value}")
    bucket, _, key = value[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"an s3:// URL names a bucket and a key: {value}")
    return bucket, key


@asynccontextmanager
async def s3_client(settings: Settings) -> AsyncIterator[Any]:
    # Here, not at the top: botocore and aiobotocore cost ~50 MiB, and only backup commands call this.
    from aiobotocore.session import get_session
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": settings.storage_s3_addressing_style},
        # Non-AWS stores (COS among them) refuse the CRC headers newer botocore adds by default.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=10,
        read_timeout=120,
        retries={"mode": "standard", "max_attempts": 5},
    )
    async with get_session().create_client(
        "s3",
        region_name=settings.storage_s3_region or None,
        endpoint_url=settings.storage_s3_endpoint_url or None,
        aws_access_key_id=settings.storage_s3_access_key_id or None,
        aws_secret_access_key=settings.storage_s3_secret_access_key.get_secret_value() or None,
        aws_session_token=settings.storage_s3_session_token.get_secret_value() or None,
        config=config,
    ) as client:
        yield client


async def upload(settings: Settings, path: Path) -> str:
    """Put the archive at ``path`` under the backup prefix; returns its ``s3://`` URL."""
    if not settings.backup_bucket:
        raise ValueError("--upload needs WARDROBE_BACKUP_BUCKET")
    key = settings.backup_prefix + path.name
    async with s3_client(settings) as s3:
        upload_id = (await s3.create_multipart_upload(Bucket=settings.backup_bucket, Key=key))["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            with path.open("rb") as data:
                while chunk := data.read(PART_BYTES):
                    number = len(parts) + 1
                    answer = await s3.upload_part(
                        Bucket=settings.backup_bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                    )
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
            await s3.complete_multipart_upload(
                Bucket=settings.backup_bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # An abandoned upload keeps its parts (and their cost) until aborted.
            await s3.abort_multipart_upload(Bucket=settings.backup_bucket, Key=key, UploadId=upload_id)
            raise
    return f"s3://{settings.backup_bucket}/{key}"


async def download(settings: Settings, url: str, target: Path) -> None:
    bucket, key = parse_s3_url(url)
    async with s3_client(settings) as s3:
        response = await s3.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            with target.open("wb") as out:
                while chunk := await body.read(READ_CHUNK):
                    out.write(chunk)
