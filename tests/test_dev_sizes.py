"""The size rule (devtools/sizes.py) that `python3 dev.py lint` applies to src/."""

from __future__ import annotations

from pathlib import Path

from devtools import sizes

ROOT = Path(__file__).resolve().parents[1]


def _function(name: str, body_lines: int) -> str:
    return f"def {name}() -> None:\n" + "    x = 1\n" * (body_lines - 1)


def test_a_long_function_and_a_long_file_are_reported_and_short_ones_are_not(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "fine.py").write_text(_function("short", 80))
    (package / "long_function.py").write_text("import os\n\n" + _function("too_long", 81))
    (package / "long_file.py").write_text("x = 1\n" * 601)
    found = sizes.check(tmp_path)
    assert found == [
        f"{package / 'long_file.py'}:1: 601 lines (at most 600): split it into a package",
        f"{package / 'long_function.py'}:3: too_long is 81 lines (at most 80)",
    ]


def test_migrations_are_exempt(tmp_path: Path) -> None:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (versions / "20260101_big.py").write_text(_function("upgrade", 200))
    assert sizes.check(tmp_path) == []


def test_the_source_tree_keeps_the_rule() -> None:
    assert sizes.check(ROOT / "src") == []
