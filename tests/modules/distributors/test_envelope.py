"""Envelope encryption: records bound to their owner's context, nonces never repeated, master key
versions that keep opening old records (local key file and the KMS peer)."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import TEST_REGION, TEST_SECRET_ID, TEST_SECRET_KEY
from tests.peers.tencent_kms import TEST_KMS_KEY_ID
from wardrobe.modules.crypto.envelope import EnvelopeCipher, SealedValue, decrypt_record, encrypt_record
from wardrobe.modules.crypto.keys import (
    DecryptionFailed,
    KeyManager,
    KeyUnavailable,
    LocalKeyFile,
    LocalKeyManager,
)
from wardrobe.modules.crypto.tencent_kms import TencentKmsKeyManager

ALICE = {"user_id": "1001"}
BOB = {"user_id": "1002"}
NUMBER = "11010519491231002X"


@pytest.fixture
def key_file(tmp_path: Path) -> LocalKeyFile:
    return LocalKeyFile(tmp_path / "keys" / "master-keys.json")


@pytest.fixture
async def kms(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[TencentKmsKeyManager]:
    manager = TencentKmsKeyManager(
        key_id=TEST_KMS_KEY_ID,
        secret_id=TEST_SECRET_ID,
        secret_key=TEST_SECRET_KEY,
        region=TEST_REGION,
        endpoint=tencent_peer.host_port,
        scheme="http",
        timeout=5,
    )
    yield manager
    await manager.aclose()


@pytest.fixture(params=["local", "kms"])
def keys(request: pytest.FixtureRequest, key_file: LocalKeyFile, kms: TencentKmsKeyManager) -> KeyManager:
    return LocalKeyManager(key_file) if request.param == "local" else kms


async def test_a_record_opens_for_its_owner_only(keys: KeyManager) -> None:
    cipher = EnvelopeCipher(keys)
    sealed = await cipher.seal(NUMBER, ALICE)
    assert await cipher.open(sealed, ALICE) == NUMBER
    # Bob's context opens neither Alice's wrapped data key...
    with pytest.raises(DecryptionFailed):
        await cipher.open(sealed, BOB)
    # ...nor her record, even with her data key in hand.
    data_key = await keys.decrypt_data_key(sealed.wrapped_key, sealed.key_ref, ALICE)
    with pytest.raises(DecryptionFailed):
        decrypt_record(data_key, sealed.nonce, sealed.ciphertext, json.dumps(BOB).encode())


async def test_only_wrapped_key_nonce_and_ciphertext_are_kept(keys: KeyManager) -> None:
    sealed = await EnvelopeCipher(keys).seal(NUMBER, ALICE)
    assert set(SealedValue.__slots__) == {"wrapped_key", "key_ref", "nonce", "ciphertext"}
    assert len(sealed.nonce) == 12
    assert NUMBER.encode() not in sealed.ciphertext
    assert NUMBER not in sealed.wrapped_key
    # Each record has its own data key.
    other = await EnvelopeCipher(keys).seal(NUMBER, ALICE)
    assert other.wrapped_key != sealed.wrapped_key
    assert other.ciphertext != sealed.ciphertext


async def test_a_tampered_record_does_not_open(keys: KeyManager) -> None:
    cipher = EnvelopeCipher(keys)
    sealed = await cipher.seal(NUMBER, ALICE)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(DecryptionFailed):
        await cipher.open(SealedValue(sealed.wrapped_key, sealed.key_ref, sealed.nonce, flipped), ALICE)
    raw = bytearray(base64.b64decode(sealed.wrapped_key))
    raw[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        await cipher.open(
            SealedValue(base64.b64encode(bytes(raw)).decode(), sealed.key_ref, sealed.nonce, sealed.ciphertext), ALICE
        )


def test_100000_encryptions_never_repeat_a_nonce() -> None:
    data_key = bytes(range(32))
    nonces = {encrypt_record(data_key, b"1", b"")[0] for _ in range(100_000)}
    assert len(nonces) == 100_000
    assert all(len(nonce) == 12 for nonce in list(nonces)[:10])


async def test_the_key_file_is_created_private_on_first_use(key_file: LocalKeyFile) -> None:
    assert not key_file.path.exists()
    keys = LocalKeyManager(key_file)
    assert keys.current_key_ref() == "local:1"
    assert stat.S_IMODE(key_file.path.stat().st_mode) == 0o600
    body = json.loads(key_file.path.read_text())
    assert body["current"] == 1
    assert len(base64.b64decode(body["keys"]["1"])) == 32


async def test_a_new_master_version_keeps_old_records_open(key_file: LocalKeyFile) -> None:
    keys = LocalKeyManager(key_file)
    cipher = EnvelopeCipher(keys)
    old = await cipher.seal(NUMBER, ALICE)
    assert old.key_ref == "local:1"
    # Another process (the rotate command) adds version 2: this one sees it without a restart.
    LocalKeyFile(key_file.path).add_version()
    assert keys.current_key_ref() == "local:2"
    assert await cipher.open(old, ALICE) == NUMBER
    new = await cipher.seal(NUMBER, BOB)
    assert new.key_ref == "local:2"
    moved = await keys.rewrap_data_key(old.wrapped_key, old.key_ref, ALICE)
    assert moved.key_ref == "local:2"
    assert await cipher.open(SealedValue(moved.wrapped, moved.key_ref, old.nonce, old.ciphertext), ALICE) == NUMBER
    # Re-wrapping keeps Alice's binding: her moved key does not open as Bob's.
    with pytest.raises(DecryptionFailed):
        await cipher.open(SealedValue(moved.wrapped, moved.key_ref, old.nonce, old.ciphertext), BOB)
    # A version the file does not have is unavailable, not "tampered".
    with pytest.raises(KeyUnavailable):
        await cipher.open(SealedValue(old.wrapped_key, "local:9", old.nonce, old.ciphertext), ALICE)


async def test_kms_disabled_or_unknown_keys_are_unavailable(
    kms: TencentKmsKeyManager, tencent_peer: ServedTencentCloudPeer
) -> None:
    cipher = EnvelopeCipher(kms)
    sealed = await cipher.seal(NUMBER, ALICE)
    assert tencent_peer.kms.key_id_of(sealed.wrapped_key) == TEST_KMS_KEY_ID
    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Disabled")
    with pytest.raises(KeyUnavailable, match="CmkDisabled"):
        await cipher.seal(NUMBER, ALICE)
    with pytest.raises(KeyUnavailable, match="CmkDisabled"):
        await cipher.open(sealed, ALICE)
    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Enabled")
    assert await cipher.open(sealed, ALICE) == NUMBER
    kms.key_id = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(KeyUnavailable, match="CmkNotFound"):
        await cipher.seal(NUMBER, ALICE)


async def test_kms_rewrap_moves_a_data_key_to_the_new_cmk(
    kms: TencentKmsKeyManager, tencent_peer: ServedTencentCloudPeer
) -> None:
    cipher = EnvelopeCipher(kms)
    old = await cipher.seal(NUMBER, ALICE)
    kms.key_id = tencent_peer.kms.create_key()
    assert await cipher.open(old, ALICE) == NUMBER  # the old CMK still opens its blobs
    moved = await kms.rewrap_data_key(old.wrapped_key, old.key_ref, ALICE)
    assert moved.key_ref == f"tencent:{kms.key_id}"
    assert tencent_peer.kms.key_id_of(moved.wrapped) == kms.key_id
    # With the old CMK disabled, the moved record still opens.
    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Disabled")
    assert await cipher.open(SealedValue(moved.wrapped, moved.key_ref, old.nonce, old.ciphertext), ALICE) == NUMBER
