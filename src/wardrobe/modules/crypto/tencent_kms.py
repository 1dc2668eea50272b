"""Data keys from Tencent Cloud KMS (2019-01-18): ``GenerateDataKey`` (AES_256) under the configured
KeyId, ``Decrypt`` to unwrap, ``Encrypt`` of the unwrapped key under the current KeyId to re-wrap.
The encryption context goes to KMS as ``EncryptionContext`` (canonical JSON): a blob only opens
under the context it was made with.

KMS answers are mapped to two failures: ``KeyUnavailable`` (disabled, archived or unknown key,
throttling, KMS unreachable; try later) and ``DecryptionFailed`` (the blob is not valid for this
context: tampered, or someone else's record)."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

import httpx
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from wardrobe.core.logging import get_logger
from wardrobe.core.tencent import tencent_client
from wardrobe.modules.crypto.keys import (
    DATA_KEY_BYTES,
    Context,
    DataKey,
    DecryptionFailed,
    EnvelopeError,
    KeyUnavailable,
    WrappedKey,
    context_bytes,
)

if TYPE_CHECKING:
    from tencentcloud.kms.v20190118.kms_client_async import KmsClient

TENCENT_PREFIX = "tencent:"
_TAMPERED = frozenset({"InvalidParameterValue.InvalidCiphertext", "InvalidParameter.DecryptMaterialError"})
log = get_logger("wardrobe.crypto.kms")


class TencentKmsKeyManager:
    def __init__(
        self,
        *,
        key_id: str,
        secret_id: str,
        secret_key: str,
        region: str,
        endpoint: str | None,
        scheme: str,
        timeout: float,
    ) -> None:
        if not key_id:
            raise ValueError("the tencent KMS backend needs a KeyId (WARDROBE_KMS_KEY_ID)")
        if not secret_id or not secret_key:
            raise ValueError("the tencent KMS backend needs WARDROBE_TENCENT_SECRET_ID and WARDROBE_TENCENT_SECRET_KEY")
        self.key_id = key_id
        # Here, not at the top: the SDK costs every process ~30 MiB, and most deployments use local keys.
        from tencentcloud.kms.v20190118.kms_client_async import KmsClient

        self._client: KmsClient = tencent_client(
            KmsClient,
            secret_id=secret_id,
            secret_key=secret_key,
            region=region,
            endpoint=endpoint,
            scheme=scheme,
            timeout=timeout,
            connect_timeout=min(timeout, 3.0),
        )

    def current_key_ref(self) -> str:
        return TENCENT_PREFIX + self.key_id

    @staticmethod
    def _failure(exc: Exception, action: str) -> EnvelopeError:
        code = str(exc.code or "") if isinstance(exc, TencentCloudSDKException) else type(exc).__name__
        log.warning("kms_call_failed", action=action, vendor_code=code)
        if code in _TAMPERED:
            return DecryptionFailed(f"KMS {action}: {code}")
        return KeyUnavailable(f"KMS {action}: {code}")

    @staticmethod
    def _plaintext(value: str | None) -> bytes:
        try:
            key = base64.b64decode(value or "", validate=True)
        except binascii.Error:
            key = b""
        if len(key) != DATA_KEY_BYTES:
            raise KeyUnavailable("KMS returned a data key that is not 32 bytes")
        return key

    async def generate_data_key(self, context: Context) -> DataKey:
        from tencentcloud.kms.v20190118 import models  # loaded with the client (__init__)

        request = models.GenerateDataKeyRequest()
        request.KeyId = self.key_id
        request.KeySpec = "AES_256"
        request.EncryptionContext = context_bytes(context).decode("utf-8")
        try:
            response = await self._client.GenerateDataKey(request)
        except (TencentCloudSDKException, httpx.HTTPError) as exc:
            raise self._failure(exc, "GenerateDataKey") from None
        return DataKey(self._plaintext(response.Plaintext), str(response.CiphertextBlob), self.current_key_ref())

    async def decrypt_data_key(self, wrapped: str, key_ref: str, context: Context) -> bytes:
        from tencentcloud.kms.v20190118 import models  # loaded with the client (__init__)

        if not key_ref.startswith(TENCENT_PREFIX):
            raise KeyUnavailable(f"{key_ref!r} was not wrapped by KMS")
        request = models.DecryptRequest()
        request.CiphertextBlob = wrapped
        request.EncryptionContext = context_bytes(context).decode("utf-8")
        try:
            response = await self._client.Decrypt(request)
        except (TencentCloudSDKException, httpx.HTTPError) as exc:
            raise self._failure(exc, "Decrypt") from None
        return self._plaintext(response.Plaintext)

    async def rewrap_data_key(self, wrapped: str, key_ref: str, context: Context) -> WrappedKey:
        from tencentcloud.kms.v20190118 import models  # loaded with the client (__init__)

        data_key = await self.decrypt_data_key(wrapped, key_ref, context)
        request = models.EncryptRequest()
        request.KeyId = self.key_id
        request.Plaintext = base64.b64encode(data_key).decode()
        request.EncryptionContext = context_bytes(context).decode("utf-8")
        try:
            response = await self._client.Encrypt(request)
        except (TencentCloudSDKException, httpx.HTTPError) as exc:
            raise self._failure(exc, "Encrypt") from None
        return WrappedKey(str(response.CiphertextBlob), self.current_key_ref())

    async def aclose(self) -> None:
        await self._client.close()
