"""The KMS service of the Tencent Cloud peer (2019-01-18): ``GenerateDataKey``, ``Decrypt`` and
``Encrypt`` with an encryption context (design/protocols.md §5).

Each KeyId has its own 32-byte master key and a state (``Enabled``/``Disabled``); tests create,
disable and enable keys. ``CiphertextBlob`` is ``b64(ver ‖ len(KeyId) ‖ KeyId ‖ nonce ‖
AES-GCM(master, plaintext, aad=EncryptionContext))`` with ``ver`` = 1, so ``Decrypt`` needs no
KeyId. A blob under another context, or altered, answers ``InvalidParameterValue.InvalidCiphertext``;
a disabled key ``ResourceUnavailable.CmkDisabled``; a KeyId that is not a UUID
``InvalidParameterValue.InvalidKeyId``; an unknown one ``ResourceUnavailable.CmkNotFound``.

The peer's lock is held by the caller of every action and taken by the test hooks.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from tests.peers.tencent_cloud import Tc3Caller

KMS_VERSION = "2019-01-18"
TEST_KMS_KEY_ID = "5d3f0b0e-6a41-11ef-9b2a-525400d3a1f0"
BLOB_VERSION = 1
MAX_PLAINTEXT_BYTES = 4096
MAX_CONTEXT_CHARS = 1024
_KEY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NONCE = 12
_SPECS = {"AES_256": 32, "AES_128": 16}

RaiseError = Callable[[str, str], Exception]
Handler = Callable[["Tc3Caller", dict[str, Any]], dict[str, Any]]


@dataclass
class MasterKey:
    material: bytes
    state: str = "Enabled"


@dataclass
class KmsService:
    error: RaiseError
    lock: threading.Lock
    keys: dict[str, MasterKey] = field(default_factory=lambda: {TEST_KMS_KEY_ID: MasterKey(os.urandom(32))})
    calls: Counter[str] = field(default_factory=Counter)  # answered actions (successes only)

    def actions(self) -> dict[str, tuple[str, str, Handler]]:
        """Action -> (service, version, handler), for the Tencent Cloud peer's dispatch."""
        return {
            "GenerateDataKey": ("kms", KMS_VERSION, self._generate_data_key),
            "Decrypt": ("kms", KMS_VERSION, self._decrypt),
            "Encrypt": ("kms", KMS_VERSION, self._encrypt),
        }

    # -- test controls -------------------------------------------------------------------------

    def create_key(self) -> str:
        key_id = str(uuid.uuid4())
        with self.lock:
            self.keys[key_id] = MasterKey(os.urandom(32))
        return key_id

    def set_state(self, key_id: str, state: str) -> None:
        with self.lock:
            self.keys[key_id].state = state

    def key_id_of(self, blob: str) -> str:
        """The KeyId a CiphertextBlob was made under."""
        return self._parse(blob)[0]

    # -- actions (called under the lock) -------------------------------------------------------

    def _usable(self, key_id: object) -> MasterKey:
        if not isinstance(key_id, str) or not key_id:
            raise self.error("MissingParameter", "The parameter `KeyId` is missing.")
        if not _KEY_ID.fullmatch(key_id):
            raise self.error("InvalidParameterValue.InvalidKeyId", "The KeyId is invalid.")
        key = self.keys.get(key_id)
        if key is None:
            raise self.error("ResourceUnavailable.CmkNotFound", "The CMK does not exist.")
        if key.state == "Disabled":
            raise self.error("ResourceUnavailable.CmkDisabled", "The CMK is disabled.")
        if key.state != "Enabled":
            raise self.error("ResourceUnavailable.CmkArchived", f"The CMK is {key.state}.")
        return key

    def _context(self, params: dict[str, Any]) -> bytes:
        context = params.get("EncryptionContext")
        if context is None or context == "":
            return b""
        if not isinstance(context, str) or len(context) > MAX_CONTEXT_CHARS:
            raise self.error(
                "InvalidParameterValue", "EncryptionContext must be a JSON string of at most 1024 characters."
            )
        try:
            parsed = json.loads(context)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise self.error("InvalidParameterValue", "EncryptionContext must be a JSON object of strings.")
        return context.encode("utf-8")

    def _seal(self, key_id: str, key: MasterKey, plaintext: bytes, aad: bytes) -> str:
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(key.material).encrypt(nonce, plaintext, aad)
        raw = bytes([BLOB_VERSION, len(key_id)]) + key_id.encode() + nonce + sealed
        return base64.b64encode(raw).decode()

    def _parse(self, blob: object) -> tuple[str, bytes, bytes]:
        invalid = self.error("InvalidParameterValue.InvalidCiphertext", "The CiphertextBlob is invalid.")
        if not isinstance(blob, str) or not blob:
            raise self.error("MissingParameter", "The parameter `CiphertextBlob` is missing.")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise invalid from None
        if len(raw) < 2 or raw[0] != BLOB_VERSION or len(raw) < 2 + raw[1] + _NONCE + 16:
            raise invalid
        end = 2 + raw[1]
        try:
            key_id = raw[2:end].decode("ascii")
        except UnicodeDecodeError:
            raise invalid from None
        return key_id, raw[end : end + _NONCE], raw[end + _NONCE :]

    def _generate_data_key(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        key_id = params.get("KeyId")
        key = self._usable(key_id)
        spec, size = params.get("KeySpec"), params.get("NumberOfBytes")
        if spec is not None:
            if spec not in _SPECS:
                raise self.error("InvalidParameterValue", "KeySpec must be AES_256 or AES_128.")
            length = _SPECS[spec]
        elif isinstance(size, int) and 1 <= size <= 1024:
            length = size
        else:
            raise self.error("MissingParameter", "Give KeySpec or NumberOfBytes (1-1024).")
        data_key = os.urandom(length)
        blob = self._seal(str(key_id), key, data_key, self._context(params))
        self.calls["GenerateDataKey"] += 1
        return {"KeyId": key_id, "Plaintext": base64.b64encode(data_key).decode(), "CiphertextBlob": blob}

    def _decrypt(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        key_id, nonce, sealed = self._parse(params.get("CiphertextBlob"))
        key = self._usable(key_id)
        try:
            plaintext = AESGCM(key.material).decrypt(nonce, sealed, self._context(params))
        except InvalidTag:
            raise self.error(
                "InvalidParameterValue.InvalidCiphertext", "The CiphertextBlob does not decrypt under this context."
            ) from None
        self.calls["Decrypt"] += 1
        return {"KeyId": key_id, "Plaintext": base64.b64encode(plaintext).decode()}

    def _encrypt(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        key_id = params.get("KeyId")
        key = self._usable(key_id)
        try:
            plaintext = base64.b64decode(str(params.get("Plaintext") or ""), validate=True)
        except binascii.Error:
            raise self.error("InvalidParameterValue", "Plaintext must be base64.") from None
        if not plaintext or len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise self.error("InvalidParameterValue", "Plaintext must be 1 to 4096 bytes.")
        blob = self._seal(str(key_id), key, plaintext, self._context(params))
        self.calls["Encrypt"] += 1
        return {"KeyId": key_id, "CiphertextBlob": blob}
