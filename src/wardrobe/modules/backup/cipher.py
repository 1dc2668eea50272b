"""Streaming encryption of backup payloads: AES-256-GCM in 64 KiB segments (the STREAM construction
of Hoang, Reyhanitabar, Rogaway and Vizár, as age and Tink's streaming AEAD use it).

Why not the envelope of ``modules/crypto``: it seals one record in memory under a data key wrapped
by KMS or the local key file, and a restore must work on a fresh machine where neither may be
reachable (the key file even sits on the disk that is being backed up). ``cryptography`` has no
streaming AEAD, and one GCM over a whole dump would hand out unauthenticated plaintext before its
tag is checked at the very end; segments are each authenticated before a byte of them is used.

Format (version 1)::

    header  = b"WRDBAK1\\n" ‖ salt (16 random bytes) ‖ nonce prefix (7 random bytes)
    key     = HKDF-SHA256(WARDROBE_BACKUP_ENCRYPTION_KEY, salt, info=b"wardrobe-backup-v1")
    segment = AES-256-GCM(key, nonce = prefix ‖ counter (4 bytes, big-endian) ‖ last (1 byte),
                          64 KiB of plaintext (less in the last), aad = header)

Each file gets its own key (the salt), the counter orders the segments and the ``last`` flag of
the final one (which may be empty) makes a truncated file fail instead of ending early.
"""

from __future__ import annotations

import io
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"WRDBAK1\n"
SALT_BYTES = 16
PREFIX_BYTES = 7
HEADER_BYTES = len(MAGIC) + SALT_BYTES + PREFIX_BYTES
SEGMENT = 64 * 1024
TAG_BYTES = 16
MAX_SEGMENTS = 2**32


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class BackupDecryptionError(Exception):
    """The payload does not open under this key: the wrong key, or it was altered or cut short."""


def _file_key(master: bytes, salt: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"wardrobe-backup-v1").derive(master)
    return AESGCM(derived)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= MAX_SEGMENTS:
        raise BackupDecryptionError("payload too long for one key")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class EncryptingWriter(io.RawIOBase):
    """A writable file: what is written goes out encrypted to ``sink``; ``close()`` seals the last
    segment (it does not close the sink)."""

    def __init__(self, sink: Writable, master: bytes) -> None:
        super().__init__()
        salt, prefix = os.urandom(SALT_BYTES), os.urandom(PREFIX_BYTES)
        self._header = MAGIC + salt + prefix
        self._aead = _file_key(master, salt)
        self._prefix = prefix
        self._sink = sink
        self._buffer = bytearray()
        self._counter = 0
        sink.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += data
        # Keep at least one byte back: the final segment must be sealed with the last flag.
        while len(self._buffer) > SEGMENT:
            self._seal(bytes(self._buffer[:SEGMENT]), last=False)
            del self._buffer[:SEGMENT]
        return len(data)

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        self._sink.write(self._aead.encrypt(_nonce(self._prefix, self._counter, last), chunk, self._header))
        self._counter += 1

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
        super().close()


class DecryptingReader(io.RawIOBase):
    """A readable file over an encrypted payload: every segment is authenticated before any of its
    bytes are returned; a wrong key, a changed byte or a missing end raise ``BackupDecryptionError``."""

    def __init__(self, source: Readable, master: bytes) -> None:
        super().__init__()
        header = source.read(HEADER_BYTES)
        if len(header) != HEADER_BYTES or not header.startswith(MAGIC):
            raise BackupDecryptionError("not an encrypted Wardrobe backup payload")
        self._header = header
        self._aead = _file_key(master, header[len(MAGIC) : len(MAGIC) + SALT_BYTES])
        self._prefix = header[-PREFIX_BYTES:]
        self._source = source
        self._counter = 0
        self._plain = b""
        self._done = False
        self._next = source.read(SEGMENT + TAG_BYTES)

    def readable(self) -> bool:
        return True

    def _advance(self) -> None:
        current = self._next
        self._next = self._source.read(SEGMENT + TAG_BYTES)
        last = not self._next
        try:
            self._plain = self._aead.decrypt(_nonce(self._prefix, self._counter, last), current, self._header)
        except InvalidTag:
            raise BackupDecryptionError(
                "the payload does not open under WARDROBE_BACKUP_ENCRYPTION_KEY (wrong key, or altered or truncated)"
            ) from None
        self._counter += 1
        self._done = last

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._plain and not self._done:
            self._advance()
        n = min(len(buffer), len(self._plain))
        buffer[:n] = self._plain[:n]
        self._plain = self._plain[n:]
        return n
