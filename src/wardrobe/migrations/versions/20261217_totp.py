"""totp: sealed TOTP secrets with the last accepted time step, when TOTP was enabled, and whether a
login session was opened with a code

Revision ID: 0013_totp
Revises: 0012_audit_changes
Create Date: 2026-12-17 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wardrobe.models.base import UTCDateTime

revision: str = "0013_totp"
down_revision: str | None = "0012_audit_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "user_totp",
        sa.Column("user_id", big, autoincrement=False, nullable=False),
        sa.Column("secret_wrapped_key", sa.String(length=1024), nullable=False),
        sa.Column("secret_key_ref", sa.String(length=160), nullable=False),
        sa.Column("secret_nonce", sa.LargeBinary(), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_totp_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_totp")),
    )
    op.create_index("ix_user_totp_key_ref", "user_totp", ["secret_key_ref", "user_id"], unique=False)
    op.add_column("users", sa.Column("totp_enabled_at", UTCDateTime(), nullable=True))
    op.add_column("auth_sessions", sa.Column("mfa", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    op.drop_column("auth_sessions", "mfa")
    op.drop_column("users", "totp_enabled_at")
    op.drop_table("user_totp")
