"""session details: where and on what each login session was last used (shown to its owner)

Revision ID: 0011_session_details
Revises: 0010_account_erasure
Create Date: 2026-12-15 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_session_details"
down_revision: str | None = "0010_account_erasure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("auth_sessions", sa.Column("device", sa.String(length=64), nullable=True))
    op.add_column("auth_sessions", sa.Column("ip_masked", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("auth_sessions", "ip_masked")
    op.drop_column("auth_sessions", "device")
