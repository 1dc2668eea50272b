"""ID numbers for tests, made with ISO 7064 MOD 11-2 written out as the standard gives it (the
iterative pure-system form), independently of the weight table the application uses."""

from __future__ import annotations

import random


def mod11_2_check(first17: str) -> str:
    p = 0
    for digit in first17:
        p = ((p + int(digit)) * 2) % 11
    value = (12 - p) % 11
    return "X" if value == 10 else str(value)


def make_id_number(rng: random.Random | None = None, *, region: str = "110105", birth: str | None = None) -> str:
    rng = rng or random.Random()
    if birth is None:
        birth = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    first17 = f"{region}{birth}{rng.randint(0, 999):03d}"
    return first17 + mod11_2_check(first17)


def id_number_with_check(check: str, rng: random.Random | None = None) -> str:
    """A valid number whose check character is ``check`` (to cover ``X``)."""
    rng = rng or random.Random(7)
    while True:
        number = make_id_number(rng)
        if number[-1] == check:
            return number


def wrong_check(number: str) -> str:
    """The same number with any other check character."""
    return number[:17] + ("0" if number[17] != "0" else "1")
