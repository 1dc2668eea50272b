"""Key validation and layout."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardrobe.modules.storage import keys

AT = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "key",
    [
        "uploads/1/2026/11/abc.png",
        "tmp/2026/11/22/x.bin",
        "a",
        "a-b_c.d/e..f",  # ".." inside a segment is a name, not a parent directory
        "x" * 255,
    ],
)
def test_valid_keys(key: str) -> None:
    assert keys.validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../etc/passwd",
        "uploads/../../etc/passwd",
        "uploads/1/..",
        "./a",
        "a/./b",
        "/etc/passwd",
        "a//b",
        "a/",
        ".meta/uploads/1/a.png",  # the local backend's own bookkeeping
        ".tmp/abc",
        "a\\..\\b",
        "a b",
        "a%2F..%2Fb",
        "a\x00b",
        "ünïcode",
        "a/" + "x" * 256,
        "/".join(["abcd"] * 300),
    ],
)
def test_invalid_keys(key: str) -> None:
    assert not keys.is_valid_key(key)
    with pytest.raises(keys.InvalidKey):
        keys.validate_key(key)


@given(st.text(max_size=64))
def test_a_valid_key_never_escapes_its_root(key: str) -> None:
    if keys.is_valid_key(key):
        segments = key.split("/")
        assert all(s and not s.startswith(".") for s in segments)
        assert re.fullmatch(r"[A-Za-z0-9/_.-]+", key)


def test_layout() -> None:
    up = keys.upload_key(42, "png", now=AT)
    assert re.fullmatch(r"uploads/42/2026/11/[0-9a-f]{32}\.png", up)
    assert keys.upload_key(42, "png", now=AT) != up
    assert keys.result_key(42, "t1-cut", "webp", now=AT) == "results/42/2026/11/t1-cut.webp"
    assert re.fullmatch(r"tmp/2026/11/22/[0-9a-f]{32}\.jpg", keys.tmp_key("jpg", now=AT))
    for made in (up, keys.result_key(42, "n", "png"), keys.tmp_key("bin")):
        assert keys.is_valid_key(made)
    with pytest.raises(keys.InvalidKey):
        keys.result_key(42, "../escape", "png")
    with pytest.raises(keys.InvalidKey):
        keys.upload_key(42, "png/../x")


@pytest.mark.parametrize(
    ("key", "owner"),
    [
        ("uploads/42/2026/11/a.png", 42),
        ("results/7/2026/11/t-s.png", 7),
        ("tmp/2026/11/22/a.png", None),
        ("uploads/042/2026/11/a.png", None),
        ("uploads/0/2026/11/a.png", None),
        ("uploads/x/2026/11/a.png", None),
        ("uploads/42", None),
        ("uploads/42/../43/a.png", None),
        ("other/42/a.png", None),
        ("", None),
    ],
)
def test_owner_of(key: str, owner: int | None) -> None:
    assert keys.owner_of(key) == owner


def test_prefixes() -> None:
    for prefix in ("", "uploads/", "uploads/4", "uploads/42/2026/"):
        assert keys.validate_prefix(prefix) == prefix
    for prefix in ("../", "/uploads", "uploads//", ".meta/", "uploads/../"):
        with pytest.raises(keys.InvalidKey):
            keys.validate_prefix(prefix)
