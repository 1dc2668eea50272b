"""Mainland China mobile numbers, the only ones the product serves.

A regular expression rather than the phonenumbers library: one country, one rule, and the
library's 40 MB of metadata would buy nothing here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

# One space or hyphen may separate the parts ("+86 138-1234-5678"), and a space may lead or trail
# (a number pasted from elsewhere); nothing else. ASCII digits only: Python's \d would also take
# other scripts' digits ("١٣٨…"), which no SMS vendor reaches. The contract states the same rule
# as this one pattern, and the server takes exactly the strings that match it.
_SEP = "[ -]?"
PHONE_PATTERN = rf"^ ?(?:(?:\+{_SEP})?8{_SEP}6{_SEP})?1{_SEP}[3-9](?:{_SEP}[0-9]){{9}} ?$"
_PHONE = re.compile(PHONE_PATTERN)
_SEPARATORS = re.compile(r"[ +\-]")
MAX_PHONE_LENGTH = 32
PHONE_MESSAGE = "must be a mainland China mobile number, e.g. 13812345678"


def normalize_phone(raw: str) -> str:
    """``+86 138-1234-5678`` → ``13812345678``; raises ValueError if it is not a CN mobile number."""
    if not _PHONE.fullmatch(raw):
        raise ValueError(PHONE_MESSAGE)
    return _SEPARATORS.sub("", raw)[-11:]


def to_e164(phone: str) -> str:
    return "+86" + phone


PHONE_SCHEMA = {
    "type": "string",
    "maxLength": MAX_PHONE_LENGTH,
    "pattern": PHONE_PATTERN,
    "description": "A mainland China mobile number; `+86`, spaces and hyphens are allowed",
    "examples": ["13812345678"],
}
Phone = Annotated[str, AfterValidator(normalize_phone), WithJsonSchema(PHONE_SCHEMA)]
