"""Verified uploads, and objects waiting to be deleted from the store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
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
    # Indexed for the retention sweep (uploads older than WARDROBE_RETENTION_DAYS).
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The store's ETag of the bytes that were verified (None on local files, whose PUT route checks
    # every arrival): a task takes the object only while its ETag is still this one, so keys that
    # may still write under the user's prefix (STS) cannot swap in other bytes of the same size.
    etag: Mapped[str | None] = mapped_column(String(128), nullable=True)


class PendingObjectDeletion(Base):
    """An object (or every object under a prefix) that must be deleted from the store.

    Written in the same transaction as the deletion that decided it (a task or an account), so the
    database change commits even when the store is down; the objects are deleted after the commit
    and, whatever fails, again by the scheduler until they are gone."""

    __tablename__ = "pending_object_deletions"
    __table_args__ = (Index("ix_pending_object_deletions_due", "next_attempt_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    # A key, or with ``is_prefix`` a prefix such as "uploads/42/" (everything of that account).
    target: Mapped[str] = mapped_column(String(1024))
    is_prefix: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
