"""The local keyword list: normalisation tricks do not get through, ordinary words do."""

from __future__ import annotations

from pathlib import Path

import pytest

from wardrobe.modules.moderation.keywords import KeywordList, tokens

WORDS = KeywordList([("赌博", "Gambling"), ("fuck", "Abuse"), ("porn*", "Porn"), ("child abuse", "Illegal"), "sex"])


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("ＦＵＣＫ you", "Abuse"),  # full-width
        ("FuCk", "Abuse"),  # case
        ("f u c k", "Abuse"),  # spelled out with spaces
        ("f.u.c.k!", "Abuse"),  # with punctuation
        ("f\u200bu\u200bc\u200bk", "Abuse"),  # zero-width spaces
        ("赌 博", "Gambling"),  # Chinese with a space
        ("赌\u3000博", "Gambling"),  # ideographic space
        ("来赌。博吧", "Gambling"),  # Chinese punctuation between
        ("色情porn", "Porn"),  # ASCII next to Chinese is a word of its own
        ("pornography", "Porn"),  # prefix keyword
        ("s3x", "keyword"),  # digits for letters, default label
        ("CHILD   ABUSE", "Illegal"),  # several words, any spacing
        ("child-abuse", "Illegal"),
    ],
)
def test_tricks_are_caught(text: str, label: str) -> None:
    assert WORDS.match(text) == label


@pytest.mark.parametrize(
    "text",
    ["class act", "Essex county", "一只穿毛衣的猫", "abuse of a child", "sexton", "", "   ", "博彩赌"],
)
def test_ordinary_text_passes(text: str) -> None:
    assert WORDS.match(text) is None


def test_tokens_fold_width_case_and_separators() -> None:
    assert tokens("Ｈｅｌｌｏ，ＷＯＲＬＤ！你好") == ["hello", "world", "你好"]


def test_a_list_file_with_comments_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("# operators' list\n\n违禁词\tIllegal\nbadword\n", encoding="utf-8")

    words = KeywordList.from_file(path)

    assert len(words) == 2
    assert (words.match("这是违禁词"), words.match("BADWORD"), words.match("# operators")) == (
        "Illegal",
        "keyword",
        None,
    )
    assert words.entries() == [("违禁词", "Illegal"), ("badword", "keyword")]


def test_the_shipped_list_loads_and_blocks_in_both_languages() -> None:
    words = KeywordList.default()

    assert len(words) > 0
    assert words.match("儿 童 色 情") == "Porn"
    assert words.match("how to MAKE A BOMB") == "Illegal"
    assert words.match("a red dress on a beach") is None
