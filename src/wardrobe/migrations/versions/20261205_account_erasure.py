"""account erasure: deleted accounts and tasks, purged task files, pending object deletions

Revision ID: 0010_account_erasure
Revises: 0009_upload_etag
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0010_account_erasure"
down_revision: str | None = "0009_upload_etag"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("deleted_at", UTCDateTime(), nullable=True))
    op.add_column("tasks", sa.Column("deleted_at", UTCDateTime(), nullable=True))
    op.add_column("tasks", sa.Column("files_purged_at", UTCDateTime(), nullable=True))
    op.create_index(op.f("ix_tasks_files_purged_at_finished_at"), "tasks", ["files_purged_at", "finished_at"])
    op.create_index(op.f("ix_verified_uploads_verified_at"), "verified_uploads", ["verified_at"])
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "pending_object_deletions",
        sa.Column("id", big, autoincrement=True, nullable=False),
        sa.Column("user_id", big, nullable=False),
        sa.Column("target", sa.String(length=1024), nullable=False),
        sa.Column("is_prefix", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_pending_object_deletions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_object_deletions")),
    )
    op.create_index(op.f("ix_pending_object_deletions_user_id"), "pending_object_deletions", ["user_id"])
    op.create_index(op.f("ix_pending_object_deletions_due"), "pending_object_deletions", ["next_attempt_at", "id"])


def downgrade() -> None:
    op.drop_table("pending_object_deletions")
    op.drop_index("ix_verified_uploads_verified_at", table_name="verified_uploads")
    op.drop_index("ix_tasks_files_purged_at_finished_at", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("files_purged_at")
        batch.drop_column("deleted_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("deleted_at")
