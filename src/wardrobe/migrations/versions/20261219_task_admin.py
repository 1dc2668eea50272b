"""task admin: retries of failed tasks (tasks.retry_of, once each) and the support console's indexes

Revision ID: 0015_task_admin
Revises: 0014_admin_reads
Create Date: 2026-12-19 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_task_admin"
down_revision: str | None = "0014_admin_reads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    # SQLite adds a constraint by copying the table (batch); the others alter it in place.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("retry_of", big, nullable=True))
        batch.create_foreign_key(op.f("fk_tasks_retry_of_tasks"), "tasks", ["retry_of"], ["id"])
        batch.create_unique_constraint(op.f("uq_tasks_retry_of"), ["retry_of"])
    op.create_index(op.f("ix_tasks_feature_key_id"), "tasks", ["feature_key", "id"])
    op.create_index(op.f("ix_tasks_error_code_id"), "tasks", ["error_code", "id"])
    op.create_index(op.f("ix_task_steps_provider_task_id"), "task_steps", ["provider", "task_id"])


def downgrade() -> None:
    op.drop_index("ix_task_steps_provider_task_id", table_name="task_steps")
    op.drop_index("ix_tasks_error_code_id", table_name="tasks")
    op.drop_index("ix_tasks_feature_key_id", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        # The foreign key first: on MariaDB it leans on the unique index.
        batch.drop_constraint("fk_tasks_retry_of_tasks", type_="foreignkey")
        batch.drop_constraint("uq_tasks_retry_of", type_="unique")
        batch.drop_column("retry_of")
