"""verified uploads

Revision ID: 0008_verified_uploads
Revises: 0007_distributors
Create Date: 2026-12-13 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0008_verified_uploads"
down_revision: str | None = "0007_distributors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "verified_uploads",
        sa.Column("id", big, autoincrement=True, nullable=False),
        sa.Column("object_key", sa.String(length=255), nullable=False),
        sa.Column("user_id", big, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("verified_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_verified_uploads_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verified_uploads")),
        sa.UniqueConstraint("object_key", name=op.f("uq_verified_uploads_object_key")),
    )
    op.create_index(op.f("ix_verified_uploads_user_id"), "verified_uploads", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("verified_uploads")
