"""admin reads: the audit log by actor and time, orders and the ledger by creation time (exports)

The audit-log reader pages newest first under a filter; (actor_id, created_at) replaces the index
on actor_id alone (it still serves the foreign key). Accounting's CSV exports read orders and
ledger rows of a date range.

Revision ID: 0014_admin_reads
Revises: 0013_totp
Create Date: 2026-12-18 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_admin_reads"
down_revision: str | None = "0013_totp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Created before the old one goes: MySQL keeps an index on a foreign key's column at all times.
    op.create_index("ix_audit_logs_actor", "audit_logs", ["actor_id", "created_at"])
    op.drop_index("ix_audit_logs_actor_id", table_name="audit_logs")
    op.create_index("ix_orders_created_at", "orders", ["created_at"])
    op.create_index("ix_quota_ledger_created_at", "quota_ledger", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_quota_ledger_created_at", table_name="quota_ledger")
    op.drop_index("ix_orders_created_at", table_name="orders")
    op.create_index("ix_audit_logs_actor_id", "audit_logs", ["actor_id"])
    op.drop_index("ix_audit_logs_actor", table_name="audit_logs")
