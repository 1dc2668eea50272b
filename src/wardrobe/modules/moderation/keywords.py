"""The local keyword list: a cheap first pass that is always on, with or without a vendor.

Text and keywords are normalised the same way before matching, so the usual tricks do not get
through: full-width and other compatibility forms (``ＦＵＣＫ``, ``①``) fold to plain characters by
NFKC; case folds; spaces, punctuation, symbols and invisible characters (zero-width spaces, soft
hyphens) are separators. Then:

- a keyword with any non-ASCII character (Chinese, say) matches anywhere in the text with every
  separator removed, since Chinese has no word boundaries: ``赌 博``, ``赌.博`` and ``赌\u200b博``
  all hit ``赌博``;
- an ASCII keyword matches whole words only, so ``class`` never hits ``ass`` (the Scunthorpe
  problem). Letters spelled out one by one (``f u c k``, ``f.u.c.k``) are joined back into a word,
  common digit-for-letter spellings (``s3x``) are tried as letters too, a run of ASCII next to
  Chinese is a word of its own (``色情porn``), and a keyword may end in ``*`` to match words that
  start with it (``porn*`` hits ``pornography``). Several words (``child porn``) must appear in
  that order, next to each other.

A list is one keyword per line; ``#`` starts a comment line; a tab then a label gives the hit a
label (default ``keyword``) that is logged instead of the text. Only labels leave this module.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DEFAULT_LABEL = "keyword"
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"})


def _fold(text: str) -> str:
    # NFKC after casefold too: folding can produce sequences that NFKC composes again.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _is_separator(char: str) -> bool:
    # Z*: spaces; P*: punctuation; S*: symbols; C*: controls, format (zero-width), unassigned.
    return unicodedata.category(char)[0] in "ZPSC"


def _is_ascii_word_char(char: str) -> bool:
    return char.isascii() and char.isalnum()


def tokens(text: str) -> list[str]:
    """Words of ``text`` after folding: runs of word characters, split at separators and where
    ASCII meets any other script. Not joined: that is the matcher's business."""
    words: list[str] = []
    current: list[str] = []
    current_ascii = False
    for char in _fold(text):
        if _is_separator(char):
            if current:
                words.append("".join(current))
                current = []
            continue
        is_ascii = _is_ascii_word_char(char)
        if current and is_ascii != current_ascii:
            words.append("".join(current))
            current = []
        current.append(char)
        current_ascii = is_ascii
    if current:
        words.append("".join(current))
    return words


def _join_spelled_out(words: list[str]) -> list[str]:
    """``["f", "u", "c", "k", "you"]`` → ``["fuck", "you"]``: runs of two or more one-letter ASCII
    words are one word spelled out."""
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and _is_ascii_word_char(word):
            run.append(word)
            continue
        if len(run) >= 2:
            joined.append("".join(run))
        else:
            joined.extend(run)
        run = []
        if word:
            joined.append(word)
    return joined


def _deleet(word: str) -> str:
    if word.isascii() and any(c.isalpha() for c in word) and any(c.isdigit() for c in word):
        return word.translate(_LEET)
    return word


@dataclass(frozen=True, slots=True)
class _Entry:
    words: tuple[str, ...]  # ASCII keyword: its words; wide keyword: one compact string
    prefix: bool  # the last word may be the start of a longer word
    wide: bool
    label: str


def _entry(raw: str, label: str) -> _Entry | None:
    prefix = raw.rstrip().endswith("*")
    words = tokens(raw.rstrip().rstrip("*"))
    if not words:
        return None
    compact = "".join(words)
    if not all(_is_ascii_word_char(c) for c in compact):
        return _Entry((compact,), False, True, label)
    return _Entry(tuple(words), prefix, False, label)


class KeywordList:
    """Case-, width- and spacing-insensitive keyword matching (see the module docstring)."""

    def __init__(self, keywords: Iterable[str | tuple[str, str]] = ()) -> None:
        entries: list[_Entry] = []
        self._items: list[tuple[str, str]] = []
        for item in keywords:
            raw, label = (item, DEFAULT_LABEL) if isinstance(item, str) else item
            entry = _entry(raw, label or DEFAULT_LABEL)
            if entry is not None:
                entries.append(entry)
                self._items.append((raw, label or DEFAULT_LABEL))
        self._wide = [e for e in entries if e.wide]
        self._ascii = [e for e in entries if not e.wide]

    @classmethod
    def from_text(cls, text: str) -> KeywordList:
        items: list[tuple[str, str]] = []
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            keyword, _, label = line.partition("\t")
            items.append((keyword.strip(), label.strip()))
        return cls(items)

    @classmethod
    def from_file(cls, path: str | Path) -> KeywordList:
        return cls.from_text(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def default(cls) -> KeywordList:
        """The small list shipped with the code; operators give their own file in production."""
        text = resources.files(__package__).joinpath("default_keywords.txt").read_text(encoding="utf-8")
        return cls.from_text(text)

    def entries(self) -> list[tuple[str, str]]:
        """The (keyword, label) pairs as given, to build a longer list from this one."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._wide) + len(self._ascii)

    def match(self, text: str) -> str | None:
        """The label of the first keyword found in ``text``, or None."""
        words = tokens(text)
        if not words:
            return None
        compact = "".join(words)
        for entry in self._wide:
            if entry.words[0] in compact:
                return entry.label
        if not self._ascii:
            return None
        joined = _join_spelled_out(words)
        candidates = [joined]
        deleeted = [_deleet(w) for w in joined]
        if deleeted != joined:
            candidates.append(deleeted)
        for entry in self._ascii:
            if any(_contains(candidate, entry) for candidate in candidates):
                return entry.label
        return None


def _contains(words: list[str], entry: _Entry) -> bool:
    size = len(entry.words)
    last = size - 1
    for start in range(len(words) - size + 1):
        for offset, expected in enumerate(entry.words):
            word = words[start + offset]
            if word == expected or (entry.prefix and offset == last and word.startswith(expected)):
                continue
            break
        else:
            return True
    return False
