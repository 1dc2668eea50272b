"""Verified uploads (E2): an uploaded object that passed verification, tied to its owner."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class VerifiedUpload(Base):
    """One object under ``uploads/{user_id}/`` whose bytes were checked (size bound, sniffed type,
    pixel cap) after they arrived: by the local backend's PUT route, or by
    ``POST /api/v1/uploads/complete`` when the client sent them straight to the bucket. Tasks take
    only keys that have a row here for their user."""

    __tablename__ = "verified_uploads"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Upload keys are short (uploads/{id}/yyyy/mm/{uuid}.ext); 255 keeps the unique index small.
    object_key: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The store's ETag of the bytes that were verified (None on local files, whose PUT route checks
    # every arrival): a task takes the object only while its ETag is still this one, so keys that
    # may still write under the user's prefix (STS) cannot swap in other bytes of the same size.
    etag: Mapped[str | None] = mapped_column(String(128), nullable=True)
