"""API keys: how a business customer's own systems call the API as one of its users."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class ApiKey(Base):
    """A key acts as its owner within its scopes. Only a hash of the secret is kept: the secret is
    shown once, when the key is made."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(64))
    # "wk_" and the first characters of the secret: enough to tell keys apart in a list or a log.
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    rate_limit: Mapped[str] = mapped_column(String(64))  # the `limits` notation, e.g. "60/minute"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
