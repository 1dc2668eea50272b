"""Direct upload credentials for Tencent COS: STS ``GetFederationToken`` with a policy that
lets the holder only write under ``uploads/{user_id}/``.

The call goes through the Tencent Cloud SDK's common async client (TC3-signed, as Tencent Cloud
documents it): the STS SDK on the package index has no async client. The policy allows PutObject,
PostObject and the multipart actions on ``qcs::cos:<region>:uid/<appid>:<bucket>/uploads/<id>/*``
and nothing else, so the keys can neither read (not even the user's own objects: downloads go
through signed URLs) nor write anywhere else.

Credentials are cached per user while at least ``MIN_REMAINING_SECONDS`` of their life remain:
Redis when configured (every process shares them), else this process's memory. A client asking
twice in a row gets the same keys, and STS is called about once per user per lifetime.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from wardrobe.core.errors import DependencyUnavailable
from wardrobe.core.logging import get_logger
from wardrobe.core.tencent import tencent_client
from wardrobe.modules.storage import keys
from wardrobe.modules.storage.expiring import ExpiringValues

if TYPE_CHECKING:
    from tencentcloud.common.credential import Credential
    from tencentcloud.common.profile.client_profile import ClientProfile

STS_VERSION = "2018-08-13"
# What the temporary keys may do: single-request and multipart uploads, nothing else.
UPLOAD_ACTIONS = (
    "name/cos:PutObject",
    "name/cos:PostObject",
    "name/cos:InitiateMultipartUpload",
    "name/cos:ListParts",
    "name/cos:UploadPart",
    "name/cos:CompleteMultipartUpload",
    "name/cos:AbortMultipartUpload",
)
MAX_DURATION_SECONDS = 1800
# Cached keys are handed out only while at least this much of their life remains, so a client
# always has time to finish an upload with them.
MIN_REMAINING_SECONDS = 300
FEDERATION_NAME = "wardrobe-uploads"

log = get_logger("wardrobe.storage.sts")


def upload_prefix(user_id: int) -> str:
    return f"{keys.UPLOADS}/{int(user_id)}/"


def upload_policy(*, region: str, appid: str, bucket: str, prefix: str) -> dict[str, Any]:
    """The CAM policy of a user's upload credentials (COS's documented prefix-scoped form)."""
    return {
        "version": "2.0",
        "statement": [
            {
                "effect": "allow",
                "action": list(UPLOAD_ACTIONS),
                "resource": [f"qcs::cos:{region}:uid/{appid}:{bucket}/{prefix}*"],
            }
        ],
    }


@dataclass(frozen=True, slots=True)
class UploadCredentials:
    tmp_secret_id: str
    tmp_secret_key: str
    session_token: str
    expires_at: datetime
    bucket: str
    region: str
    prefix: str

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["expires_at"] = self.expires_at.isoformat().replace("+00:00", "Z")
        return out

    def remaining(self, now: float) -> float:
        return self.expires_at.timestamp() - now


@functools.cache
def _sts_client_class() -> type[Any]:
    """The common client bound to STS, shaped like the generated clients for ``tencent_client``."""
    # Here, not at the top: the SDK costs every process ~20 MiB, and only COS direct uploads use STS.
    from tencentcloud.common.common_client_async import CommonClient

    class _StsClient(CommonClient):  # type: ignore[misc]  # the SDK is untyped
        def __init__(self, credential: Credential, region: str, profile: ClientProfile | None = None) -> None:
            super().__init__("sts", STS_VERSION, credential, region, profile)

    return _StsClient


class StsUploadCredentials:
    """Issues (and caches) a user's upload credentials."""

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        sts_region: str,
        endpoint: str | None,
        scheme: str,
        timeout: float,
        bucket: str,
        cos_region: str,
        appid: str,
        duration_seconds: int,
        cache: ExpiringValues,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret_id or not secret_key:
            raise ValueError("STS upload credentials need WARDROBE_TENCENT_SECRET_ID and WARDROBE_TENCENT_SECRET_KEY")
        if not 0 < duration_seconds <= MAX_DURATION_SECONDS:
            raise ValueError(f"the credentials' lifetime must be 1..{MAX_DURATION_SECONDS} seconds")
        self._client: Any = tencent_client(
            _sts_client_class(),
            secret_id=secret_id,
            secret_key=secret_key,
            region=sts_region,
            endpoint=endpoint,
            scheme=scheme,
            timeout=timeout,
            connect_timeout=min(timeout, 3.0),
        )
        self.bucket = bucket
        self.cos_region = cos_region
        self.appid = appid
        self.duration_seconds = duration_seconds
        self._cache = cache
        self._clock = clock
        self._locks: dict[int, asyncio.Lock] = {}

    async def for_user(self, user_id: int) -> UploadCredentials:
        """Keys that may write under ``uploads/{user_id}/`` for at least ``MIN_REMAINING_SECONDS``."""
        cached = await self._cached(user_id)
        if cached is not None:
            return cached
        # One STS call per user at a time in this process; a second process may race and call too,
        # which costs one call and leaves two valid key pairs.
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            cached = await self._cached(user_id)
            if cached is not None:
                return cached
            issued = await self._issue(user_id)
            ttl = issued.remaining(self._clock()) - MIN_REMAINING_SECONDS
            if ttl > 0:
                await self._cache.set(self._cache_key(user_id), orjson.dumps(issued.as_dict()), ttl)
        self._locks.pop(user_id, None)
        return issued

    @staticmethod
    def _cache_key(user_id: int) -> str:
        return f"sts-upload:{int(user_id)}"

    async def _cached(self, user_id: int) -> UploadCredentials | None:
        raw = await self._cache.get(self._cache_key(user_id))
        if raw is None:
            return None
        data = orjson.loads(raw)
        data["expires_at"] = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
        found = UploadCredentials(**data)
        if found.bucket != self.bucket or found.remaining(self._clock()) < MIN_REMAINING_SECONDS:
            return None
        return found

    async def _issue(self, user_id: int) -> UploadCredentials:
        prefix = upload_prefix(user_id)
        policy = upload_policy(region=self.cos_region, appid=self.appid, bucket=self.bucket, prefix=prefix)
        params = {
            "Name": FEDERATION_NAME,
            # STS takes the policy URL-encoded (GetFederationToken's documentation).
            "Policy": quote(json.dumps(policy, separators=(",", ":")), safe=""),
            "DurationSeconds": self.duration_seconds,
        }
        try:
            answer = await self._client.call_and_deserialize("GetFederationToken", params)
            response = answer["Response"]
            credentials = response["Credentials"]
            issued = UploadCredentials(
                tmp_secret_id=str(credentials["TmpSecretId"]),
                tmp_secret_key=str(credentials["TmpSecretKey"]),
                session_token=str(credentials["Token"]),
                expires_at=datetime.fromtimestamp(int(response["ExpiredTime"]), UTC),
                bucket=self.bucket,
                region=self.cos_region,
                prefix=prefix,
            )
        except TencentCloudSDKException as exc:
            log.warning("sts_call_failed", vendor_code=str(exc.code or ""), request_id=exc.requestId)
            raise DependencyUnavailable(detail=f"STS GetFederationToken: {exc.code}") from None
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            log.warning("sts_call_failed", error=type(exc).__name__)
            raise DependencyUnavailable(detail=f"STS GetFederationToken: {type(exc).__name__}") from None
        log.info("sts_credentials_issued", user_id=user_id, expires_at=issued.expires_at.isoformat())
        return issued

    async def aclose(self) -> None:
        await self._client.close()
