"""ID-card numbers: 18 characters, region, birth date and the MOD 11-2 check character."""

from __future__ import annotations

import random
from datetime import date

import pytest

from tests.modules.distributors.helpers import id_number_with_check, make_id_number, mod11_2_check, wrong_check
from wardrobe.modules.distributors.id_card import IdNumberInvalid, mask_id_number, normalize_id_number


def test_the_standard_example_number() -> None:
    # GB 11643-1999's worked example: 11010519491231002 has check character X.
    assert mod11_2_check("11010519491231002") == "X"
    assert normalize_id_number("11010519491231002x") == "11010519491231002X"


def test_numbers_made_with_the_algorithm_are_accepted() -> None:
    rng = random.Random(2026)
    for _ in range(500):
        number = make_id_number(rng)
        assert normalize_id_number(number) == number
    assert normalize_id_number(id_number_with_check("X")).endswith("X")


def test_a_wrong_check_character_is_refused() -> None:
    rng = random.Random(11)
    for _ in range(200):
        with pytest.raises(IdNumberInvalid, match="check character"):
            normalize_id_number(wrong_check(make_id_number(rng)))


@pytest.mark.parametrize(
    ("first17", "why"),
    [
        ("99010519491231002", "region"),  # no province 99
        ("11000019491231002", "region"),  # 0000 is no county
        ("11010518991231002", "birth date"),  # before 1900
        ("11010519490230002", "birth date"),  # 30 February
        ("11010530000101002", "birth date"),  # in the future
    ],
)
def test_implausible_region_or_birth_date_is_refused(first17: str, why: str) -> None:
    with pytest.raises(IdNumberInvalid, match=why):
        normalize_id_number(first17 + mod11_2_check(first17), today=date(2026, 12, 6))


@pytest.mark.parametrize(
    "raw", ["", "1101051949123100", "1101051949123100211", "1101051949123100A2", "X1010519491231002"]
)
def test_malformed_numbers_are_refused(raw: str) -> None:
    with pytest.raises(IdNumberInvalid):
        normalize_id_number(raw)


def test_masking_keeps_four_and_four() -> None:
    assert mask_id_number("11010519491231002X") == "1101**********002X"
