"""What a database holds, measured the same way at backup and at verification: rows per table, the
Alembic revision, and the quota ledger's invariants per user.

The invariants are those of ``models/billing.py``: an account's ``balance`` is the sum of its
ledger rows' ``amount`` and its ``held`` the sum of their ``hold_delta`` (every kind counts: grants,
purchases, reserves, confirms, cancels, membership expiries, adjustments, referral rewards and
clawbacks), and ``held`` is also what its open holds (``quota_holds`` still ``held``) reserve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from wardrobe.modules.backup.archive import LedgerSummary, Manifest

# Ledger sums per account, and ledger rows of users who have no account at all.
_LEDGER_CHECK = text(
    """
    SELECT a.user_id, a.balance, a.held,
           COALESCE(l.amount_sum, 0) AS amount_sum, COALESCE(l.hold_sum, 0) AS hold_sum,
           COALESCE(h.open_sum, 0) AS open_sum
    FROM quota_accounts a
    LEFT JOIN (SELECT user_id, SUM(amount) AS amount_sum, SUM(hold_delta) AS hold_sum
               FROM quota_ledger GROUP BY user_id) l ON l.user_id = a.user_id
    LEFT JOIN (SELECT user_id, SUM(amount) AS open_sum
               FROM quota_holds WHERE status = 'held' GROUP BY user_id) h ON h.user_id = a.user_id
    ORDER BY a.user_id
    """
)
_ORPHAN_LEDGER = text(
    "SELECT DISTINCT l.user_id FROM quota_ledger l LEFT JOIN quota_accounts a ON a.user_id = l.user_id "
    "WHERE a.user_id IS NULL ORDER BY l.user_id"
)


@dataclass
class Snapshot:
    row_counts: dict[str, int]
    alembic_revision: str | None
    ledger: LedgerSummary
    violations: list[str] = field(default_factory=list)  # one line per broken account, naming the user


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _measure(conn: Connection) -> Snapshot:
    tables = sorted(inspect(conn).get_table_names())
    counts = {}
    for name in tables:
        # Names come from the database's own catalogue, quoted: nothing of a caller's reaches SQL.
        count_rows = text(f"SELECT COUNT(*) FROM {_quote(conn, name)}")  # noqa: S608
        counts[name] = int(conn.execute(count_rows).scalar_one())
    revision = None
    if "alembic_version" in tables:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    summary = LedgerSummary()
    violations: list[str] = []
    if {"quota_accounts", "quota_ledger", "quota_holds"} <= set(tables):
        summary.ledger_rows = counts["quota_ledger"]
        for row in conn.execute(_LEDGER_CHECK):
            summary.accounts += 1
            summary.balance_total += int(row.balance)
            summary.held_total += int(row.held)
            problems = []
            if int(row.balance) != int(row.amount_sum):
                problems.append(f"balance {row.balance} != sum of ledger amount {row.amount_sum}")
            if int(row.held) != int(row.hold_sum):
                problems.append(f"held {row.held} != sum of ledger hold_delta {row.hold_sum}")
            if int(row.held) != int(row.open_sum):
                problems.append(f"held {row.held} != sum of open holds {row.open_sum}")
            if problems:
                violations.append(f"user {row.user_id}: " + "; ".join(problems))
        for row in conn.execute(_ORPHAN_LEDGER):
            violations.append(f"user {row.user_id}: ledger rows without a quota account")
        summary.violations = len(violations)
    return Snapshot(counts, revision, summary, violations)


async def measure(engine: AsyncEngine) -> Snapshot:
    """Counts and sums, read in one transaction (so from one consistent view on MariaDB too)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_measure)


def compare(manifest: Manifest, found: Snapshot) -> list[str]:
    """Every way the restored database differs from what the manifest promised, and every broken
    ledger invariant in it; empty when it is whole."""
    failures: list[str] = []
    for table in sorted(set(manifest.row_counts) | set(found.row_counts)):
        expected, got = manifest.row_counts.get(table), found.row_counts.get(table)
        if expected != got:
            failures.append(
                f"table {table}: {got if got is not None else 'missing'} rows, the manifest says {expected}"
            )
    if manifest.alembic_revision != found.alembic_revision:
        failures.append(f"alembic revision {found.alembic_revision!r}, the manifest says {manifest.alembic_revision!r}")
    if manifest.ledger != found.ledger:
        failures.append(f"ledger sums {found.ledger}, the manifest says {manifest.ledger}")
    failures.extend(f"ledger invariant broken: {line}" for line in found.violations)
    return failures
