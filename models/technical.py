"""Credentials of technical users: a structure's information system calling the API."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class TechnicalCredential(Base):
    """The secret of one technical user (users.kind = 'technical'), bound to the
    structure it was created for. Only the argon2id hash of the secret is stored;
    the secret itself is shown once, at creation or reset."""

    __tablename__ = "technical_credentials"
    __table_args__ = (
        CheckConstraint("length(label) > 0", name="label"),
        # Never a clear secret in this column, whatever the code does.
        CheckConstraint("secret_hash LIKE '$argon2id$%'", name="secret_hash_argon2id"),
        CheckConstraint("secret_expires_at > created_at", name="expiry_after_creation"),
        CheckConstraint("rotated_at IS NULL OR rotated_at >= created_at", name="rotation_date"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id"), index=True)
    # What the principal calls it (e.g. "Cash register software").
    label: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(200))
    secret_expires_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Last reset of the secret, if any.
    rotated_at: Mapped[dt.datetime | None]
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
