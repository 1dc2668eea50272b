"""The parts of the providers module that request code takes, by type (see ``core/deps.py``).

Each is the instance the process's task runtime already works with (registered once by the app):
the admin view reads the same slots, account directory and breaker the engine uses, and a
callback wakes the steps this process's engine polls.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wardrobe.core.deps import part
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.modules.providers.accounts import AccountDirectory
from wardrobe.modules.providers.base import ProviderRegistry
from wardrobe.modules.providers.callback_hints import CallbackHints
from wardrobe.modules.providers.health import ProviderHealth
from wardrobe.modules.providers.slots import SlotStore


async def _account_directory(
    directory: Annotated[AccountDirectory | None, Depends(part(AccountDirectory))],
) -> AccountDirectory:
    if directory is None:  # pragma: no cover - the app always builds one
        raise AppError(ErrorCode.DEPENDENCY_UNAVAILABLE)
    return directory


ProvidersDep = Annotated[ProviderRegistry, Depends(part(ProviderRegistry))]
AccountsDep = Annotated[AccountDirectory, Depends(_account_directory)]
SlotsDep = Annotated[SlotStore, Depends(part(SlotStore))]
HealthDep = Annotated[ProviderHealth, Depends(part(ProviderHealth))]
HintsDep = Annotated[CallbackHints, Depends(part(CallbackHints))]
