"""The client-facing messages our own code writes, read from the source with ``ast``.

What counts: the argument of ``ValueError`` and ``PydanticCustomError`` (shown as a field's
message by pydantic), of ``ValidationFailed`` and of the modules' one-line helpers that build a
``VALIDATION_FAILED`` (``_invalid``, ``_problem``, ``_not_applicable``), the ``message`` of a
``{"field": ..., "message": ...}`` or ``{"reason": ..., "message": ...}`` literal, a string bound to
``message`` or ``problem`` and then placed in one, and what is appended to a ``problems`` list.
An f-string's holes are filled with a sample value, so a message with a variable part is checked
against the catalog's pattern for it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "wardrobe"
ROOTS = ("core", "modules", "realtime")

# The messages of these files never reach a client: they refuse a configuration at start-up, a
# vendor's answer, or a programming mistake (each raised outside any request model), or they are
# a command line tool's (backups, the plans loader).
INTERNAL_FILES = frozenset(
    {
        "modules/backup/snapshot.py",
        "modules/billing/commands.py",
        "core/deps.py",
        "core/principal.py",
        "core/tencent.py",
        "modules/auth/sms_senders.py",
        "modules/backup/remote.py",
        "modules/backup/sqlite.py",
        "modules/billing/quota.py",
        "modules/crypto/tencent_kms.py",
        "modules/distributors/commands.py",
        "modules/moderation/factory.py",
        "modules/moderation/moderator.py",
        "modules/payments/alipay.py",
        "modules/payments/sandbox.py",
        "modules/providers/fetch.py",
        "modules/storage/backend.py",
        "modules/storage/deps.py",
        "modules/storage/s3.py",
        "modules/storage/sts.py",
    }
)
INTERNAL_DIRS = ("modules/providers/adapters/",)
# ValueErrors that are caught where they are raised and answered with a code, never shown.
INTERNAL_VALUE_ERRORS = frozenset({"InvalidKey", "NoImageEnd"})

_MESSAGE_HELPERS = {
    "ValidationFailed": 1,
    "PydanticCustomError": 1,
    "_invalid": 1,
    "_problem": 1,
    "_not_applicable": 1,
    "_state_refused": 0,
}
SAMPLE = "7"


def _samples(node: ast.expr) -> list[str]:
    """The strings ``node`` may evaluate to, with every hole of an f-string filled by SAMPLE."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        text = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                text += str(part.value)
            else:
                text += SAMPLE
        return [text]
    if isinstance(node, ast.IfExp):
        return _samples(node.body) + _samples(node.orelse)
    return []


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _value_errors(trees: list[ast.Module]) -> set[str]:
    """ValueError and our subclasses of it (IdNumberInvalid, AccountConfigError...), whose
    messages pydantic shows as they are when a validator raises them."""
    names = {"ValueError"}
    grew = True
    while grew:
        found = {
            node.name
            for tree in trees
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and any(_name(base) in names for base in node.bases)
        }
        grew = not found <= names
        names |= found
    return names - INTERNAL_VALUE_ERRORS


def _from_node(node: ast.AST, value_errors: set[str]) -> Iterator[str]:
    if isinstance(node, ast.Call):
        name = _name(node.func)
        if name in value_errors and node.args:
            yield from _samples(node.args[0])
        elif name in _MESSAGE_HELPERS and len(node.args) > _MESSAGE_HELPERS[name]:
            yield from _samples(node.args[_MESSAGE_HELPERS[name]])
        elif name == "append" and isinstance(node.func, ast.Attribute) and node.args:
            target = node.func.value
            if isinstance(target, ast.Name) and target.id == "problems":
                yield from _samples(node.args[0])
    elif isinstance(node, ast.Dict):
        keys = {k.value: v for k, v in zip(node.keys, node.values, strict=True) if isinstance(k, ast.Constant)}
        if "message" in keys and ({"field", "reason"} & keys.keys()):
            yield from _samples(keys["message"])
    elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        bound = node.targets[0].id
        if bound in ("message", "problem") or bound.endswith("_MESSAGE"):
            yield from _samples(node.value)


def own_messages() -> dict[str, str]:
    """Each message (holes filled) → where it is written, ``path:line``."""
    trees: dict[str, ast.Module] = {}
    for root in ROOTS:
        for path in sorted((SRC / root).rglob("*.py")):
            trees[path.relative_to(SRC).as_posix()] = ast.parse(path.read_text(encoding="utf-8"))
    value_errors = _value_errors(list(trees.values()))
    found: dict[str, str] = {}
    for rel, tree in trees.items():
        if rel in INTERNAL_FILES or rel.startswith(INTERNAL_DIRS):
            continue
        for node in ast.walk(tree):
            for message in _from_node(node, value_errors):
                found.setdefault(message, f"{rel}:{getattr(node, 'lineno', 0)}")
    return found
