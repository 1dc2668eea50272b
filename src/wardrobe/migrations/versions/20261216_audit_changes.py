"""audit changes: what an admin action changed (before/after), indexed for the audit-log reader

Revision ID: 0012_audit_changes
Revises: 0011_session_details
Create Date: 2026-12-16 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_audit_changes"
down_revision: str | None = "0011_session_details"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_logs", sa.Column("before", sa.JSON(), nullable=True))
    op.add_column("audit_logs", sa.Column("after", sa.JSON(), nullable=True))
    op.create_index("ix_audit_logs_action", "audit_logs", ["action", "created_at"])
    op.create_index("ix_audit_logs_created_at", "audit_logs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_logs_created_at", table_name="audit_logs")
    op.drop_index("ix_audit_logs_action", table_name="audit_logs")
    op.drop_column("audit_logs", "after")
    op.drop_column("audit_logs", "before")
