"""feature_definitions: name_en and description_en, what English-speaking users read (nullable
columns only: the running version never reads them)

Revision ID: 0023_feature_names_en
Revises: 0022_wechat_accounts
Create Date: 2026-12-27 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_feature_names_en"
down_revision: str | None = "0022_wechat_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("feature_definitions", sa.Column("name_en", sa.String(length=64), nullable=True))
    op.add_column("feature_definitions", sa.Column("description_en", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feature_definitions", schema=None) as batch_op:
        batch_op.drop_column("description_en")
        batch_op.drop_column("name_en")
