"""tracing: the trace id (and W3C traceparent) of the work that created a task or wrote an outbox
message, so a worker running or resuming the task, and the relay publishing the message, carry it on

Revision ID: 0018_tracing
Revises: 0017_stats
Create Date: 2026-12-22 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_tracing"
down_revision: str | None = "0017_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("tasks", "outbox")
COLUMNS = ("trace_id", "trace_parent")


def upgrade() -> None:
    # Nullable, no default: the running version writes rows without them, and rows from before
    # simply have no trace to carry on.
    # Plain ADD COLUMN (no batch copy): every backend, SQLite included, adds a nullable column in
    # place, and the migration check reads it as an expand operation.
    for table in TABLES:
        for column in COLUMNS:
            op.add_column(table, sa.Column(column, sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column in reversed(COLUMNS):
                batch.drop_column(column)
