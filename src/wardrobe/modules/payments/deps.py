"""The payment part routes take, beside those of ``wardrobe.core.deps``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wardrobe.core.deps import part
from wardrobe.modules.payments.gateway import Payments

# The configured platforms; a vendor that can be down, so routes taking it can answer 503.
PaymentsDep = Annotated[Payments, Depends(part(Payments))]
