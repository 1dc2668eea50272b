"""plans: what operators sell — English name, membership tier and the features it unlocks, the
payment channels a plan is offered on, a validity window, an edit time; the start of a member's
current term and an index for the membership expiry job

Revision ID: 0016_plans
Revises: 0015_task_admin
Create Date: 2026-12-20 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0016_plans"
down_revision: str | None = "0015_task_admin"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("plans", sa.Column("name_en", sa.String(length=64), nullable=True))
    op.add_column("plans", sa.Column("tier", sa.String(length=32), nullable=True))
    op.add_column("plans", sa.Column("valid_from", UTCDateTime(), nullable=True))
    op.add_column("plans", sa.Column("valid_to", UTCDateTime(), nullable=True))
    # Added nullable, filled for the plans that exist, then made NOT NULL: a JSON column takes no
    # literal default on every backend.
    op.add_column("plans", sa.Column("features", sa.JSON(), nullable=True))
    op.add_column("plans", sa.Column("channels", sa.JSON(), nullable=True))
    op.add_column("plans", sa.Column("updated_at", UTCDateTime(), nullable=True))
    plans = sa.table(
        "plans",
        sa.column("features", sa.JSON()),
        sa.column("channels", sa.JSON()),
        sa.column("created_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    )
    op.execute(plans.update().values(features=[], channels=[], updated_at=plans.c.created_at))
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.alter_column("features", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("channels", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("updated_at", existing_type=UTCDateTime(), nullable=False)

    op.add_column("quota_accounts", sa.Column("membership_started_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("quota_accounts", schema=None) as batch_op:
        batch_op.create_index("ix_quota_accounts_membership_expires_at", ["membership_expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quota_accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_quota_accounts_membership_expires_at")
    op.drop_column("quota_accounts", "membership_started_at")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
        batch_op.drop_column("channels")
        batch_op.drop_column("features")
        batch_op.drop_column("valid_to")
        batch_op.drop_column("valid_from")
        batch_op.drop_column("tier")
        batch_op.drop_column("name_en")
