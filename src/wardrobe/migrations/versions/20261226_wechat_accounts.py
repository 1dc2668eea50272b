"""wechat_accounts: a user's WeChat Open Platform identity (unionid, website and mobile app openids),
for WeChat login on the web and in the app (a new table only: the running version never reads it)

Revision ID: 0022_wechat_accounts
Revises: 0021_webhooks
Create Date: 2026-12-26 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0022_wechat_accounts"
down_revision: str | None = "0021_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "wechat_accounts",
        sa.Column("id", BIG, autoincrement=True, nullable=False),
        sa.Column("user_id", BIG, nullable=False),
        sa.Column("unionid", sa.String(length=64), nullable=True),
        sa.Column("web_openid", sa.String(length=64), nullable=True),
        sa.Column("app_openid", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_wechat_accounts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_accounts")),
        sa.UniqueConstraint("user_id", name=op.f("uq_wechat_accounts_user_id")),
        sa.UniqueConstraint("unionid", name=op.f("uq_wechat_accounts_unionid")),
        sa.UniqueConstraint("web_openid", name=op.f("uq_wechat_accounts_web_openid")),
        sa.UniqueConstraint("app_openid", name=op.f("uq_wechat_accounts_app_openid")),
    )


def downgrade() -> None:
    op.drop_table("wechat_accounts")
