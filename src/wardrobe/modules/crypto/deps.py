"""The envelope cipher as a route dependency, on the process's key manager."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wardrobe.core.deps import part
from wardrobe.modules.crypto.envelope import EnvelopeCipher
from wardrobe.modules.crypto.keys import KeyManager


async def get_cipher(keys: Annotated[KeyManager, Depends(part(KeyManager, backed=False))]) -> EnvelopeCipher:
    """Envelope encryption on the process's key manager (built in the app's lifespan)."""
    return EnvelopeCipher(keys)


CipherDep = Annotated[EnvelopeCipher, Depends(get_cipher)]
