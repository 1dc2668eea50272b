"""The streaming payload encryption: round trips at every segment boundary; a wrong key, a changed
byte, a reordered or missing segment and a cut-off end all fail before any of it is used."""

from __future__ import annotations

import io
import os

import pytest

from wardrobe.modules.backup.cipher import (
    HEADER_BYTES,
    SEGMENT,
    TAG_BYTES,
    BackupDecryptionError,
    DecryptingReader,
    EncryptingWriter,
)

KEY = os.urandom(32)


def _seal(data: bytes, key: bytes = KEY, write_size: int = 10_000) -> bytes:
    out = io.BytesIO()
    writer = EncryptingWriter(out, key)
    for start in range(0, len(data), write_size):
        writer.write(data[start : start + write_size])
    writer.close()
    return out.getvalue()


def _open(sealed: bytes, key: bytes = KEY) -> bytes:
    return io.BufferedReader(DecryptingReader(io.BytesIO(sealed), key)).read()


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 3 * SEGMENT + 17])
def test_round_trip_at_every_boundary(size: int) -> None:
    data = os.urandom(size)
    sealed = _seal(data)
    segments = max(1, -(-size // SEGMENT))  # the last segment holds 1 to SEGMENT bytes (0 only when empty)
    assert len(sealed) == HEADER_BYTES + size + TAG_BYTES * segments
    assert _open(sealed) == data


def test_each_file_has_its_own_key_and_nonces() -> None:
    data = b"the same dump" * 1000
    assert _seal(data) != _seal(data)


def test_wrong_key_fails() -> None:
    with pytest.raises(BackupDecryptionError, match="does not open"):
        _open(_seal(b"ledger rows"), os.urandom(32))


def test_tampering_fails() -> None:
    data = os.urandom(3 * SEGMENT + 5)
    sealed = bytearray(_seal(data))
    block = SEGMENT + TAG_BYTES
    flipped = bytearray(sealed)
    flipped[HEADER_BYTES + block + 10] ^= 0x80
    swapped = sealed[:HEADER_BYTES] + sealed[HEADER_BYTES + block : HEADER_BYTES + 2 * block]
    swapped += sealed[HEADER_BYTES : HEADER_BYTES + block] + sealed[HEADER_BYTES + 2 * block :]
    cut_at_boundary = sealed[: HEADER_BYTES + 2 * block]
    header_changed = bytearray(sealed)
    header_changed[10] ^= 0x01
    for bad in (flipped, swapped, cut_at_boundary, header_changed, sealed[:-1]):
        with pytest.raises(BackupDecryptionError):
            _open(bytes(bad))
    with pytest.raises(BackupDecryptionError, match="not an encrypted"):
        _open(b"\x1f\x8b plain gzip")


def test_the_key_setting_must_be_32_bytes_of_base64() -> None:
    from pydantic import ValidationError

    from wardrobe.settings import Settings

    for bad in ("not base64!", "c2hvcnQ="):
        with pytest.raises(ValidationError, match="WARDROBE_BACKUP_ENCRYPTION_KEY"):
            Settings(backup_encryption_key=bad)
    good = Settings(backup_encryption_key="A" * 43 + "=")
    assert len(good.backup_encryption_key.get_secret_value()) == 44
