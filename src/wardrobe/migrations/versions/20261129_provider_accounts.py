"""provider accounts, and the account of each step's vendor job

Revision ID: 0006_provider_accounts
Revises: 0005_vendor_callbacks
Create Date: 2026-11-29 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0006_provider_accounts"
down_revision: str | None = "0005_vendor_callbacks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "provider_accounts",
        sa.Column("id", big, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=True),
        sa.Column("secret_env", sa.String(length=128), nullable=True),
        sa.Column("secret_sealed", sa.String(length=1024), nullable=True),
        sa.Column("endpoint", sa.String(length=255), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("rate", sa.String(length=64), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("updated_by", big, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_accounts")),
        sa.UniqueConstraint("provider", "name", name="uq_provider_accounts_name"),
    )
    with op.batch_alter_table("task_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_steps", schema=None) as batch_op:
        batch_op.drop_column("account")
    op.drop_table("provider_accounts")
