"""vendor callbacks and provider switches

Revision ID: 0005_vendor_callbacks
Revises: 0004_payments
Create Date: 2026-11-29 06:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0005_vendor_callbacks"
down_revision: str | None = "0004_payments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vendor_callbacks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=48), nullable=False),
        sa.Column("ref", sa.String(length=96), nullable=False),
        sa.Column("vendor_task_id", sa.String(length=96), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendor_callbacks")),
        sa.UniqueConstraint("provider", "event_id", name="uq_vendor_callbacks_event"),
    )
    with op.batch_alter_table("vendor_callbacks", schema=None) as batch_op:
        batch_op.create_index("ix_vendor_callbacks_ref", ["ref"], unique=False)
        batch_op.create_index("ix_vendor_callbacks_job", ["provider", "vendor_task_id"], unique=False)

    op.create_table(
        "provider_switches",
        sa.Column("slug", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("updated_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_provider_switches")),
    )


def downgrade() -> None:
    op.drop_table("provider_switches")
    with op.batch_alter_table("vendor_callbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_vendor_callbacks_job")
        batch_op.drop_index("ix_vendor_callbacks_ref")
    op.drop_table("vendor_callbacks")
