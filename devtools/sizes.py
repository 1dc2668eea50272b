"""The size rule of the code base: no file under src/ over 600 lines, no function over 80.

ruff counts statements and branches (PLR0915, C901) but not lines, and the rule is about what a
reader has to hold in view, so this reads the lines with the standard library's ``ast``. Migrations
are exempt: each is a generated-then-edited record of one schema change, read once.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
EXEMPT_PARTS = ("migrations",)


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def problems(path: Path, text: str) -> list[str]:
    """What breaks the rule in one file, as ``path:line: message`` lines."""
    found = []
    lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    if lines > MAX_FILE_LINES:
        found.append(f"{path}:1: {lines} lines (at most {MAX_FILE_LINES}): split it into a package")
    for func in _functions(ast.parse(text, filename=str(path))):
        length = (func.end_lineno or func.lineno) - func.lineno + 1
        if length > MAX_FUNCTION_LINES:
            found.append(f"{path}:{func.lineno}: {func.name} is {length} lines (at most {MAX_FUNCTION_LINES})")
    return found


def check(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if any(part in EXEMPT_PARTS for part in path.relative_to(root).parts):
            continue
        found.extend(problems(path, path.read_text(encoding="utf-8")))
    return found


def main(root: Path) -> int:
    found = check(root)
    for line in found:
        print(line)
    if found:
        print(f"sizes: {len(found)} over the limits", file=sys.stderr)
        return 1
    return 0
