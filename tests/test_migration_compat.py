"""Every migration after the last release (src/wardrobe/migrations/RELEASED) only expands the
schema, so the running version keeps working while the new one is rolled out (docs/operations.md,
"Upgrading without downtime"). Read from the sources with ``ast``: the ``op.*`` calls of each
``upgrade()``.

Expand: new tables (and their indexes and constraints), new columns that are nullable or have a
server default, new non-unique indexes, an existing column made nullable or given a default.
Contract (a later release, once no running version reads or writes what goes): dropping or renaming
a table or column, changing a column's type, making it NOT NULL, a unique index or constraint on a
table the running version writes, raw SQL the check cannot read.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fixtures.tasks import ROOT

MIGRATIONS = ROOT / "src" / "wardrobe" / "migrations"
IGNORED = {"f"}  # op.f(): a constraint name, not an operation
ALWAYS = {"create_table", "bulk_insert"}
ON_NEW_TABLES = {"create_unique_constraint", "create_foreign_key", "create_check_constraint", "create_primary_key"}


def released() -> str:
    lines = (MIGRATIONS / "RELEASED").read_text(encoding="utf-8").splitlines()
    (revision,) = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return revision


def _constant(node: ast.expr | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _arg(call: ast.Call, position: int, name: str) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return call.args[position] if len(call.args) > position else None


def _keywords(call: ast.Call) -> dict[str, object]:
    return {k.arg: _constant(k.value) for k in call.keywords if k.arg is not None}


def _column_problem(column: ast.expr | None) -> str | None:
    if not isinstance(column, ast.Call):
        return "a column the check cannot read"
    options = _keywords(column)
    if options.get("primary_key") is True:
        return "a primary-key column on an existing table"
    if options.get("nullable") is False and "server_default" not in options:
        return "a NOT NULL column without a server default (the running version inserts rows without it)"
    return None


def _problem(call: ast.Call, operation: str, new_tables: set[str]) -> str | None:
    if operation in IGNORED | ALWAYS:
        return None
    if operation == "add_column":
        return _column_problem(_arg(call, 1, "column"))
    if operation == "create_index":
        table = _constant(_arg(call, 1, "table_name"))
        if _keywords(call).get("unique") is True and table not in new_tables:
            return "a unique index on a table the running version writes"
        return None
    if operation in ON_NEW_TABLES:
        table = _constant(_arg(call, 1, "source_table" if operation == "create_foreign_key" else "table_name"))
        return None if table in new_tables else "a constraint on a table the running version writes"
    if operation == "alter_column":
        options = {k.arg for k in call.keywords}
        if options & {"new_column_name", "type_"}:
            return "a renamed column or a changed type"
        if _keywords(call).get("nullable") is False:
            return "a column made NOT NULL"
        return None
    return "a contract (or unreadable) operation"


def violations(source: str) -> list[str]:
    """What in ``upgrade()`` of a migration's source is not expand-only, one line each."""
    tree = ast.parse(source)
    upgrade = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade")
    calls = [
        n
        for n in ast.walk(upgrade)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "op"
    ]
    new_tables = {
        str(_constant(_arg(c, 0, "table_name")))
        for c in calls
        if isinstance(c.func, ast.Attribute) and c.func.attr == "create_table"
    }
    found = []
    for call in calls:
        assert isinstance(call.func, ast.Attribute)
        problem = _problem(call, call.func.attr, new_tables)
        if problem is not None:
            found.append(f"line {call.lineno}: op.{call.func.attr}: {problem}")
    return found


def _revisions() -> dict[str, tuple[Path, tuple[str, ...]]]:
    """revision -> (file, its down revisions)."""
    found: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        values: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.AnnAssign | ast.Assign):
                target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
                if isinstance(target, ast.Name) and target.id in {"revision", "down_revision"} and node.value:
                    values[target.id] = ast.literal_eval(node.value)
        down = values.get("down_revision")
        downs = tuple(down) if isinstance(down, tuple | list) else (() if down is None else (str(down),))
        found[str(values["revision"])] = (path, downs)
    return found


def unreleased() -> list[Path]:
    """The migrations after the released revision (its descendants in the chain)."""
    revisions = _revisions()
    baseline = released()
    assert baseline in revisions, f"RELEASED names {baseline!r}, which no migration is"
    newer: set[str] = set()
    grew = True
    while grew:
        grew = False
        for revision, (_, downs) in revisions.items():
            if revision not in newer and any(d == baseline or d in newer for d in downs):
                newer.add(revision)
                grew = True
    return [revisions[r][0] for r in sorted(newer)]


def test_migrations_after_the_release_only_expand() -> None:
    checked = unreleased()
    found = {p.name: v for p in checked if (v := violations(p.read_text(encoding="utf-8")))}
    assert found == {}, "contract operations before the release that stops using them: " + repr(found)


def test_the_released_revision_is_in_the_chain_and_newer_ones_are_checked() -> None:
    names = [p.name for p in unreleased()]
    assert "20261223_scheduler_runs.py" in names
    assert "20261221_stats.py" not in names  # the release itself is not rechecked


GOOD = """
def upgrade() -> None:
    op.create_table("wishes", sa.Column("id", sa.Integer(), nullable=False), sa.PrimaryKeyConstraint("id"))
    op.create_unique_constraint(op.f("uq_wishes_id"), "wishes", ["id"])
    op.create_index(op.f("ix_wishes_id"), "wishes", ["id"], unique=True)
    op.add_column("users", sa.Column("nickname", sa.String(32), nullable=True))
    op.add_column("users", sa.Column("level", sa.Integer(), nullable=False, server_default="0"))
    op.create_index(op.f("ix_users_level"), "users", ["level"])
    op.alter_column("users", "bio", existing_type=sa.String(64), nullable=True)


def downgrade() -> None:
    op.drop_table("wishes")
"""

BAD = """
def upgrade() -> None:
    op.drop_column("users", "bio")
    op.drop_table("wishes")
    op.rename_table("users", "people")
    op.alter_column("users", "bio", new_column_name="about")
    op.alter_column("users", "bio", type_=sa.Text())
    op.alter_column("users", "bio", nullable=False)
    op.add_column("users", sa.Column("level", sa.Integer(), nullable=False))
    op.create_index(op.f("ix_users_phone"), "users", ["phone"], unique=True)
    op.create_unique_constraint("uq_users_phone", "users", ["phone"])
    op.execute("UPDATE users SET bio = ''")
"""


def test_the_check_passes_expansions_and_flags_each_contract_operation() -> None:
    assert violations(GOOD) == []
    flagged = violations(BAD)
    assert [line.split(":")[1].strip() for line in flagged] == [
        "op.drop_column",
        "op.drop_table",
        "op.rename_table",
        "op.alter_column",
        "op.alter_column",
        "op.alter_column",
        "op.add_column",
        "op.create_index",
        "op.create_unique_constraint",
        "op.execute",
    ]
