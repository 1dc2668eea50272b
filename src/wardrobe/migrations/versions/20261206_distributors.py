"""distributor applications with sealed ID numbers

Revision ID: 0007_distributors
Revises: 0006_provider_accounts
Create Date: 2026-12-06 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0007_distributors"
down_revision: str | None = "0006_provider_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "distributor_applications",
        sa.Column("id", big, autoincrement=True, nullable=False),
        sa.Column("user_id", big, nullable=False),
        sa.Column("active_user_id", big, nullable=True),
        sa.Column("real_name", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("id_number_masked", sa.String(length=18), nullable=False),
        sa.Column("id_wrapped_key", sa.String(length=1024), nullable=False),
        sa.Column("id_key_ref", sa.String(length=160), nullable=False),
        sa.Column("id_nonce", sa.LargeBinary(), nullable=False),
        sa.Column("id_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reviewer_id", big, nullable=True),
        sa.Column("review_reason", sa.String(length=500), nullable=True),
        sa.Column("reviewed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_distributor_applications_user_id_users")),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_distributor_applications_reviewer_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distributor_applications")),
        sa.UniqueConstraint("active_user_id", name=op.f("uq_distributor_applications_active_user_id")),
    )
    op.create_index(op.f("ix_distributor_applications_user_id"), "distributor_applications", ["user_id"], unique=False)
    op.create_index("ix_distributor_applications_status", "distributor_applications", ["status", "id"], unique=False)
    op.create_index(
        "ix_distributor_applications_key_ref", "distributor_applications", ["id_key_ref", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("distributor_applications")
