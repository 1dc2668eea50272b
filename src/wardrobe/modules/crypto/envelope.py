"""Records sealed under their own data key: AES-256-GCM, a random 96-bit nonce, the encryption
context (the owner) as associated data. What is stored: the wrapped data key, the master key it is
wrapped under, the nonce and the ciphertext, never the data key or the plaintext."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wardrobe.modules.crypto.keys import NONCE_BYTES, Context, DecryptionFailed, KeyManager, context_bytes


@dataclass(frozen=True, slots=True)
class SealedValue:
    wrapped_key: str
    key_ref: str
    nonce: bytes
    ciphertext: bytes  # with the 16-byte GCM tag


def encrypt_record(data_key: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """``(nonce, ciphertext)``: each call draws a fresh random nonce, so one key never sees the
    same nonce twice in practice (2^-96 per pair), even if a data key were ever reused."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(data_key).encrypt(nonce, plaintext, aad)


def decrypt_record(data_key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(data_key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError):
        raise DecryptionFailed("the record does not open under this context") from None


class EnvelopeCipher:
    """Seals and opens values with a fresh data key each; the plaintext key lives only inside one
    call."""

    def __init__(self, keys: KeyManager) -> None:
        self.keys = keys

    async def seal(self, plaintext: str, context: Context) -> SealedValue:
        data_key = await self.keys.generate_data_key(context)
        nonce, ciphertext = encrypt_record(data_key.plaintext, plaintext.encode("utf-8"), context_bytes(context))
        return SealedValue(data_key.wrapped, data_key.key_ref, nonce, ciphertext)

    async def open(self, sealed: SealedValue, context: Context) -> str:
        data_key = await self.keys.decrypt_data_key(sealed.wrapped_key, sealed.key_ref, context)
        return decrypt_record(data_key, sealed.nonce, sealed.ciphertext, context_bytes(context)).decode("utf-8")
