"""Master keys that wrap per-record data keys: the ``KeyManager`` protocol and the local key file.

A data key is 32 random bytes that encrypt one record. Only its wrapped form (encrypted under a
master key, bound to the record's encryption context) is stored, with ``key_ref`` naming the master
key that wrapped it: ``local:<version>`` for the key file, ``tencent:<KeyId>`` for KMS. Rotation
re-wraps data keys under the current master key; the records themselves are never re-encrypted.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DATA_KEY_BYTES = 32
NONCE_BYTES = 12
LOCAL_PREFIX = "local:"

Context = Mapping[str, str]


class EnvelopeError(Exception):
    """A data key could not be made, wrapped or unwrapped."""


class KeyUnavailable(EnvelopeError):
    """The master key cannot be used now (disabled, unknown, KMS unreachable): try again later."""


class DecryptionFailed(EnvelopeError):
    """The wrapped key or the record does not open under this context: tampered, or the context
    (the owner) is not the one it was sealed for."""


@dataclass(frozen=True, slots=True)
class DataKey:
    """A fresh data key: ``plaintext`` encrypts one record and is then dropped; ``wrapped`` and
    ``key_ref`` are stored with the record."""

    plaintext: bytes
    wrapped: str
    key_ref: str


@dataclass(frozen=True, slots=True)
class WrappedKey:
    wrapped: str
    key_ref: str


class KeyManager(Protocol):
    """Where data keys come from and how they are unwrapped."""

    def current_key_ref(self) -> str:
        """The master key new data keys are wrapped under (rotation moves records to it)."""
        ...

    async def generate_data_key(self, context: Context) -> DataKey: ...

    async def decrypt_data_key(self, wrapped: str, key_ref: str, context: Context) -> bytes: ...

    async def rewrap_data_key(self, wrapped: str, key_ref: str, context: Context) -> WrappedKey:
        """The same data key wrapped under the current master key."""
        ...

    async def aclose(self) -> None: ...


def context_bytes(context: Context) -> bytes:
    """The canonical form of an encryption context: the AAD of wraps and records alike, and the
    ``EncryptionContext`` sent to KMS."""
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class KeyFileError(EnvelopeError):
    """The key file is missing a version, malformed or unreadable."""


class LocalKeyFile:
    """A JSON file of versioned 32-byte master keys: ``{"current": 2, "keys": {"1": b64, "2": b64}}``.

    Created (mode 0600) with one key on first use. Adding a version makes it current; older
    versions stay so that records wrapped under them still open until rotation has moved them.
    Every process re-reads the file when it changes, so a version added by ``wardrobe crypto
    rotate`` is used (and opens re-wrapped records) without a restart. Synchronous: the file is a
    few hundred bytes on local disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._current = 0
        self._keys: dict[int, bytes] = {}

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        stamp = self._stat()
        if stamp is None:
            self._write(1, {1: secrets.token_bytes(DATA_KEY_BYTES)}, create=True)
            stamp = self._stat()
        if stamp == self._stamp:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            keys = {int(version): base64.b64decode(value, validate=True) for version, value in raw["keys"].items()}
            current = int(raw["current"])
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise KeyFileError(f"key file {self.path} is unreadable: {type(exc).__name__}") from None
        if current not in keys or any(len(key) != DATA_KEY_BYTES for key in keys.values()):
            raise KeyFileError(f"key file {self.path}: every key must be 32 bytes and 'current' one of them")
        self._keys, self._current, self._stamp = keys, current, stamp

    def _write(self, current: int, keys: Mapping[int, bytes], *, create: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"current": current, "keys": {str(v): base64.b64encode(k).decode() for v, k in sorted(keys.items())}}
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(body, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        if create:
            # Two processes starting at once must not each create a different first key.
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        else:
            os.replace(tmp, self.path)

    def current(self) -> tuple[int, bytes]:
        with self._lock:
            self._load()
            return self._current, self._keys[self._current]

    def key(self, version: int) -> bytes:
        with self._lock:
            self._load()
            key = self._keys.get(version)
            if key is None:
                raise KeyUnavailable(f"master key version {version} is not in {self.path}")
            return key

    def add_version(self) -> int:
        """A new random master key, made current. Returns its version."""
        with self._lock:
            self._load()
            version = max(self._keys) + 1
            keys = {**self._keys, version: secrets.token_bytes(DATA_KEY_BYTES)}
            self._write(version, keys)
            self._stamp = None
            self._load()
            return version


class LocalKeyManager:
    """Development master keys from a ``LocalKeyFile``; wraps are AES-256-GCM with the context as
    associated data: ``b64(nonce ‖ ciphertext+tag)``."""

    def __init__(self, key_file: LocalKeyFile) -> None:
        self.key_file = key_file

    def current_key_ref(self) -> str:
        version, _ = self.key_file.current()
        return f"{LOCAL_PREFIX}{version}"

    def _wrap(self, data_key: bytes, context: Context) -> WrappedKey:
        version, master = self.key_file.current()
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(master).encrypt(nonce, data_key, context_bytes(context))
        return WrappedKey(base64.b64encode(nonce + sealed).decode(), f"{LOCAL_PREFIX}{version}")

    def _unwrap(self, wrapped: str, key_ref: str, context: Context) -> bytes:
        if not key_ref.startswith(LOCAL_PREFIX) or not key_ref[len(LOCAL_PREFIX) :].isdigit():
            raise KeyUnavailable(f"{key_ref!r} is not a key of the local key file")
        master = self.key_file.key(int(key_ref[len(LOCAL_PREFIX) :]))
        try:
            raw = base64.b64decode(wrapped, validate=True)
            return AESGCM(master).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context_bytes(context))
        except (binascii.Error, ValueError, InvalidTag):
            raise DecryptionFailed("the data key does not open under this context") from None

    async def generate_data_key(self, context: Context) -> DataKey:
        data_key = os.urandom(DATA_KEY_BYTES)
        wrapped = self._wrap(data_key, context)
        return DataKey(data_key, wrapped.wrapped, wrapped.key_ref)

    async def decrypt_data_key(self, wrapped: str, key_ref: str, context: Context) -> bytes:
        return self._unwrap(wrapped, key_ref, context)

    async def rewrap_data_key(self, wrapped: str, key_ref: str, context: Context) -> WrappedKey:
        return self._wrap(self._unwrap(wrapped, key_ref, context), context)

    async def aclose(self) -> None:
        return None
