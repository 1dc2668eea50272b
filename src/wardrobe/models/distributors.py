"""Distributor applications: who applied, with what ID number (sealed), and the review."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from wardrobe.models.base import Base, BigId, UTCDateTime, utcnow


class ApplicationStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class DistributorApplication(Base):
    """One application to become a distributor.

    The ID number is stored only sealed (modules/crypto): AES-256-GCM under a data key of its own,
    wrapped by a master key (``id_key_ref``) and bound to the applicant's user id, plus a masked
    form for display. ``active_user_id`` is the applicant while the application is pending or
    approved and NULL once rejected: its unique index lets a user hold one live application at a
    time, also under concurrent requests."""

    __tablename__ = "distributor_applications"
    __table_args__ = (
        Index("ix_distributor_applications_status", "status", "id"),
        Index("ix_distributor_applications_key_ref", "id_key_ref", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    active_user_id: Mapped[int | None] = mapped_column(BigId, unique=True)
    real_name: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(20))
    id_number_masked: Mapped[str] = mapped_column(String(18))
    id_wrapped_key: Mapped[str] = mapped_column(String(1024))
    id_key_ref: Mapped[str] = mapped_column(String(160))
    id_nonce: Mapped[bytes] = mapped_column(LargeBinary())
    id_ciphertext: Mapped[bytes] = mapped_column(LargeBinary())
    status: Mapped[str] = mapped_column(String(16), default=ApplicationStatus.PENDING.value)
    reviewer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    review_reason: Mapped[str | None] = mapped_column(String(500))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
