"""Resident identity card numbers (GB 11643-1999): 18 characters, a plausible region and birth
date, and the ISO 7064 MOD 11-2 check character (``X`` stands for 10)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

# The check character is (12 - Σ(dᵢ·wᵢ) mod 11) mod 11 with wᵢ = 2^(17-i) mod 11; this table maps
# the sum mod 11 straight to it.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# Provinces, autonomous regions and municipalities; 71/81/82 Taiwan, Hong Kong, Macao; 83 is the
# Taiwan residents' permit prefix.
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54}
    | {61, 62, 63, 64, 65, 71, 81, 82, 83}
)
EARLIEST_BIRTH_YEAR = 1900
# ASCII only (str.isdigit would take other scripts' digits too), spaces around allowed, x for X.
_DIGITS_AND_CHECK = re.compile(r"[0-9]{17}[0-9X]")
ID_NUMBER_PATTERN = "^ *[0-9]{17}[0-9Xx] *$"


class IdNumberInvalid(ValueError):
    """Why a number is not an ID number; the message never repeats the number."""


def check_character(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def normalize_id_number(raw: str, *, today: date | None = None) -> str:
    """The number with an upper-case ``X``, or ``IdNumberInvalid``."""
    number = raw.strip(" ").upper()
    if len(number) != 18:
        raise IdNumberInvalid("must be 18 characters")
    if not _DIGITS_AND_CHECK.fullmatch(number):
        raise IdNumberInvalid("must be 17 digits followed by a digit or X")
    if int(number[:2]) not in _PROVINCES or number[2:6] == "0000":
        raise IdNumberInvalid("the region code is not valid")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise IdNumberInvalid("the birth date is not a date") from None
    if born.year < EARLIEST_BIRTH_YEAR or born > (today or datetime.now(UTC).date()):
        raise IdNumberInvalid("the birth date is not plausible")
    if check_character(number[:17]) != number[17]:
        raise IdNumberInvalid("the check character does not match")
    return number


def mask_id_number(number: str) -> str:
    """``1101**********1234``: the first four and last four characters."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:]
