"""Mainland China mobile numbers, the only ones the product serves.

A regular expression rather than the phonenumbers library: one country, one rule, and the
library's 40 MB of metadata would buy nothing here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_CN_MOBILE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")


def normalize_phone(raw: str) -> str:
    """``+86 138-1234-5678`` → ``13812345678``; raises ValueError if it is not a CN mobile number."""
    compact = re.sub(r"[\s\-]", "", raw)
    match = _CN_MOBILE.match(compact)
    if not match:
        raise ValueError("must be a mainland China mobile number, e.g. 13812345678")
    return match.group(1)


def to_e164(phone: str) -> str:
    return "+86" + phone


Phone = Annotated[str, AfterValidator(normalize_phone)]
