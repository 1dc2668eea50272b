"""billing

Revision ID: 0002_billing
Revises: 0001_accounts
Create Date: 2026-11-22 08:26:54.270873
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0002_billing"
down_revision: str | None = "0001_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("period_days", sa.Integer(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_plans_price_non_negative")),
        sa.CheckConstraint("quota >= 0", name=op.f("ck_plans_quota_non_negative")),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_plans")),
    )
    op.create_table(
        "quota_accounts",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("balance", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("membership_sku", sa.String(length=64), nullable=True),
        sa.Column("membership_expires_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_quota_accounts_balance_non_negative")),
        sa.CheckConstraint("held <= balance", name=op.f("ck_quota_accounts_held_within_balance")),
        sa.CheckConstraint("held >= 0", name=op.f("ck_quota_accounts_held_non_negative")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_quota_accounts_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_quota_accounts")),
    )
    op.create_table(
        "quota_holds",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_quota_holds_amount_positive")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_quota_holds_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_holds")),
        sa.UniqueConstraint("ref", name=op.f("uq_quota_holds_ref")),
    )
    with op.batch_alter_table("quota_holds", schema=None) as batch_op:
        batch_op.create_index("ix_quota_holds_open", ["status", "expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_quota_holds_user_id"), ["user_id"], unique=False)

    op.create_table(
        "quota_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("hold_delta", sa.Integer(), nullable=False),
        sa.Column("balance_after", sa.Integer(), nullable=False),
        sa.Column("held_after", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=96), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_quota_ledger_actor_id_users")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_quota_ledger_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_ledger")),
        sa.UniqueConstraint("kind", "ref", name="uq_quota_ledger_kind_ref"),
    )
    with op.batch_alter_table("quota_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_quota_ledger_user_id_id", ["user_id", "id"], unique=False)

    # Every existing user gets an (empty) account, so "one account per user" holds from here on.
    op.execute(
        "INSERT INTO quota_accounts (user_id, balance, held, updated_at) SELECT id, 0, 0, CURRENT_TIMESTAMP FROM users"
    )


def downgrade() -> None:
    with op.batch_alter_table("quota_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_quota_ledger_user_id_id")

    op.drop_table("quota_ledger")
    with op.batch_alter_table("quota_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quota_holds_user_id"))
        batch_op.drop_index("ix_quota_holds_open")

    op.drop_table("quota_holds")
    op.drop_table("quota_accounts")
    op.drop_table("plans")
