"""The KMS service of the Tencent Cloud peer answers as protocols.md §5 describes, checked with the
official async SDK: data keys bound to their encryption context, key states, Tencent's error codes."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import models
from tencentcloud.kms.v20190118.kms_client_async import KmsClient

from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import TEST_REGION, TEST_SECRET_ID, TEST_SECRET_KEY
from tests.peers.tencent_kms import TEST_KMS_KEY_ID

CONTEXT_A = json.dumps({"user_id": "1"})
CONTEXT_B = json.dumps({"user_id": "2"})


def _client(peer: ServedTencentCloudPeer, secret_key: str = TEST_SECRET_KEY) -> KmsClient:
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=peer.host_port, protocol="http", reqTimeout=5))
    return KmsClient(Credential(TEST_SECRET_ID, secret_key), TEST_REGION, profile)


@pytest.fixture
async def kms(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[KmsClient]:
    client = _client(tencent_peer)
    yield client
    await client.close()


async def _generate(
    kms: KmsClient, key_id: str = TEST_KMS_KEY_ID, context: str = CONTEXT_A
) -> models.GenerateDataKeyResponse:
    request = models.GenerateDataKeyRequest()
    request.KeyId, request.KeySpec, request.EncryptionContext = key_id, "AES_256", context
    return await kms.GenerateDataKey(request)


async def _decrypt(kms: KmsClient, blob: str, context: str = CONTEXT_A) -> models.DecryptResponse:
    request = models.DecryptRequest()
    request.CiphertextBlob, request.EncryptionContext = blob, context
    return await kms.Decrypt(request)


async def _code(call: object) -> str:
    with pytest.raises(TencentCloudSDKException) as info:
        await call  # type: ignore[misc]
    return str(info.value.code)


async def test_a_data_key_opens_under_its_own_context_only(kms: KmsClient) -> None:
    generated = await _generate(kms)
    assert generated.KeyId == TEST_KMS_KEY_ID
    data_key = base64.b64decode(generated.Plaintext)
    assert len(data_key) == 32
    assert data_key not in base64.b64decode(generated.CiphertextBlob)
    opened = await _decrypt(kms, generated.CiphertextBlob)
    assert (opened.KeyId, base64.b64decode(opened.Plaintext)) == (TEST_KMS_KEY_ID, data_key)
    assert await _code(_decrypt(kms, generated.CiphertextBlob, CONTEXT_B)) == "InvalidParameterValue.InvalidCiphertext"
    assert await _code(_decrypt(kms, generated.CiphertextBlob, "")) == "InvalidParameterValue.InvalidCiphertext"
    raw = bytearray(base64.b64decode(generated.CiphertextBlob))
    raw[-1] ^= 1
    tampered = base64.b64encode(bytes(raw)).decode()
    assert await _code(_decrypt(kms, tampered)) == "InvalidParameterValue.InvalidCiphertext"
    assert await _code(_decrypt(kms, "bm90IGEgYmxvYg==")) == "InvalidParameterValue.InvalidCiphertext"


async def test_encrypt_wraps_under_the_named_key(kms: KmsClient, tencent_peer: ServedTencentCloudPeer) -> None:
    other = tencent_peer.kms.create_key()
    request = models.EncryptRequest()
    request.KeyId, request.Plaintext, request.EncryptionContext = other, base64.b64encode(b"k" * 32).decode(), CONTEXT_A
    blob = (await kms.Encrypt(request)).CiphertextBlob
    assert tencent_peer.kms.key_id_of(blob) == other
    assert base64.b64decode((await _decrypt(kms, blob)).Plaintext) == b"k" * 32
    request.Plaintext = base64.b64encode(b"k" * 4097).decode()
    assert await _code(kms.Encrypt(request)) == "InvalidParameterValue"


async def test_key_states_and_unknown_keys(kms: KmsClient, tencent_peer: ServedTencentCloudPeer) -> None:
    blob = (await _generate(kms)).CiphertextBlob
    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Disabled")
    assert await _code(_generate(kms)) == "ResourceUnavailable.CmkDisabled"
    assert await _code(_decrypt(kms, blob)) == "ResourceUnavailable.CmkDisabled"
    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Enabled")
    assert await _decrypt(kms, blob)
    assert await _code(_generate(kms, "00000000-0000-0000-0000-000000000000")) == "ResourceUnavailable.CmkNotFound"
    assert await _code(_generate(kms, "not-a-key-id")) == "InvalidParameterValue.InvalidKeyId"
    assert await _code(_generate(kms, context="[1, 2]")) == "InvalidParameterValue"
    assert tencent_peer.kms.calls["GenerateDataKey"] == 1


async def test_requests_are_tc3_verified(tencent_peer: ServedTencentCloudPeer) -> None:
    client = _client(tencent_peer, secret_key="not-the-key")
    try:
        assert await _code(_generate(client)) == "AuthFailure.SignatureFailure"
    finally:
        await client.close()
    assert tencent_peer.kms.calls["GenerateDataKey"] == 0
