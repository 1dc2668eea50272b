"""verified uploads remember the ETag of the bytes that were verified

Revision ID: 0009_upload_etag
Revises: 0008_verified_uploads
Create Date: 2026-11-29 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_upload_etag"
down_revision: str | None = "0008_verified_uploads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: rows verified before this revision (and every row on local files) have none, and
    # are then checked by size only, as before.
    op.add_column("verified_uploads", sa.Column("etag", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verified_uploads") as batch:
        batch.drop_column("etag")
