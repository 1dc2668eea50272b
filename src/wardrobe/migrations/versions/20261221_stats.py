"""stats: daily rollup tables of the business figures, and the indexes their range queries use
(tasks, users, ledger by creation time; orders by payment time; refunds by settlement time)

Revision ID: 0017_stats
Revises: 0016_plans
Create Date: 2026-12-21 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0017_stats"
down_revision: str | None = "0016_plans"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stats_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("new_users", sa.Integer(), nullable=False),
        sa.Column("active_users", sa.Integer(), nullable=False),
        sa.Column("quota_granted", sa.BigInteger(), nullable=False),
        sa.Column("quota_spent", sa.BigInteger(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_stats_daily")),
    )
    op.create_table(
        "stats_daily_tasks",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tasks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "feature", "status", name=op.f("pk_stats_daily_tasks")),
    )
    op.create_table(
        "stats_daily_performance",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("tasks", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("max_ms", sa.BigInteger(), nullable=True),
        # The duration histogram: one counter per bucket (models/stats.py), fixed when written.
        *(sa.Column(f"d{index:02d}", sa.Integer(), nullable=False) for index in range(50)),
        sa.PrimaryKeyConstraint("day", "feature", "provider", name=op.f("pk_stats_daily_performance")),
    )
    op.create_table(
        "stats_daily_revenue",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("revenue_fen", sa.BigInteger(), nullable=False),
        sa.Column("refunds_fen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "channel", name=op.f("pk_stats_daily_revenue")),
    )
    op.create_table(
        "stats_daily_active_users",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", BIG_ID, autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("day", "user_id", name=op.f("pk_stats_daily_active_users")),
    )
    op.create_index("ix_stats_daily_active_users_user_id_day", "stats_daily_active_users", ["user_id", "day"])
    op.create_index("ix_tasks_created_at_user_id", "tasks", ["created_at", "user_id"])
    op.create_index("ix_users_created_at", "users", ["created_at"])
    op.create_index("ix_quota_ledger_kind_created_at", "quota_ledger", ["kind", "created_at"])
    op.create_index("ix_orders_paid_at", "orders", ["paid_at"])
    op.create_index("ix_refunds_settled_at", "refunds", ["settled_at"])


def downgrade() -> None:
    op.drop_index("ix_refunds_settled_at", table_name="refunds")
    op.drop_index("ix_orders_paid_at", table_name="orders")
    op.drop_index("ix_quota_ledger_kind_created_at", table_name="quota_ledger")
    op.drop_index("ix_users_created_at", table_name="users")
    op.drop_index("ix_tasks_created_at_user_id", table_name="tasks")
    op.drop_table("stats_daily_active_users")
    op.drop_table("stats_daily_revenue")
    op.drop_table("stats_daily_performance")
    op.drop_table("stats_daily_tasks")
    op.drop_table("stats_daily")
