"""Attachments, subscriptions and the requests that lead to them."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, one_of, utcnow

if TYPE_CHECKING:
    from .accounts import User

ROLES = ("principal", "secondary", "simple", "technical")
ATTACHMENT_STATUSES = ("pending", "validated", "deactivated", "refused", "deleted")
LEVELS = ("consult", "modify")
SUBSCRIPTION_STATUSES = ("validated", "deactivated")
REQUEST_STATUSES = ("pending", "validated", "refused")
SUBSCRIPTION_REQUEST_ORIGINS = ("manual", "default_spaces")
INVITATION_STATUSES = ("pending", "accepted", "refused", "withdrawn", "expired")


def _unique_per_scope(name: str, *columns: str) -> tuple[Index, Index]:
    """Unique (columns…, service) where a NULL service means "whole structure".

    SQL treats NULLs as distinct, so one partial index covers each case.
    """
    return (
        Index(
            f"uq_{name}_whole",
            *columns,
            unique=True,
            sqlite_where=text("service_id IS NULL"),
            postgresql_where=text("service_id IS NULL"),
        ),
        Index(
            f"uq_{name}_service",
            *columns,
            "service_id",
            unique=True,
            sqlite_where=text("service_id IS NOT NULL"),
            postgresql_where=text("service_id IS NOT NULL"),
        ),
    )


class Attachment(Base):
    """Link user ↔ structure (service_id NULL) or ↔ one service of it."""

    __tablename__ = "attachments"
    __table_args__ = (
        *_unique_per_scope("attachments", "user_id", "structure_id"),
        # At most one validated principal per structure, whatever the code does.
        Index(
            "uq_attachments_one_principal",
            "structure_id",
            unique=True,
            sqlite_where=text("role = 'principal' AND status = 'validated'"),
            postgresql_where=text("role = 'principal' AND status = 'validated'"),
        ),
        CheckConstraint(one_of("role", ROLES), name="role"),
        CheckConstraint(one_of("status", ATTACHMENT_STATUSES), name="status"),
        CheckConstraint("valid_until IS NULL OR valid_until >= valid_from", name="dates"),
        CheckConstraint(
            "role <> 'principal' OR service_id IS NULL", name="principal_whole_structure"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id"), index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"))
    role: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Subscription(Base):
    """A right of a user on a space of a structure (all services, or one)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        *_unique_per_scope("subscriptions", "user_id", "structure_id", "space_code"),
        CheckConstraint(one_of("level", LEVELS), name="level"),
        CheckConstraint(one_of("status", SUBSCRIPTION_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id"), index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"))
    space_code: Mapped[str] = mapped_column(ForeignKey("spaces.code"))
    level: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12), default="validated")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AttachmentRequest(Base):
    __tablename__ = "attachment_requests"
    __table_args__ = (
        CheckConstraint(one_of("status", REQUEST_STATUSES), name="status"),
        CheckConstraint(f"role IS NULL OR {one_of('role', ('secondary', 'simple'))}", name="role"),
        CheckConstraint("status <> 'refused' OR length(reason) > 0", name="refusal_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id"), index=True)
    # True: the whole structure; False: the services listed in `services`.
    whole_structure: Mapped[bool] = mapped_column(Boolean, default=True)
    comment: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    # Role given at validation (the manager may change it before validating).
    role: Mapped[str | None] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[dt.datetime | None]
    processed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    # Loaded with the requests (lists show them: no query per request).
    services: Mapped[list[AttachmentRequestService]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    # The requester, for lists that show people rather than ids (read only).
    user: Mapped[User] = relationship(foreign_keys=[user_id], viewonly=True, lazy="selectin")


class AttachmentRequestService(Base):
    __tablename__ = "attachment_request_services"

    request_id: Mapped[int] = mapped_column(ForeignKey("attachment_requests.id"), primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), primary_key=True)


class SubscriptionRequest(Base):
    __tablename__ = "subscription_requests"
    __table_args__ = (
        CheckConstraint(one_of("status", REQUEST_STATUSES), name="status"),
        CheckConstraint(one_of("origin", SUBSCRIPTION_REQUEST_ORIGINS), name="origin"),
        CheckConstraint("status <> 'refused' OR length(reason) > 0", name="refusal_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id"), index=True)
    comment: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(20), default="manual")
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    manager_comment: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[dt.datetime | None]
    processed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    # Loaded with the requests (lists show them: no query per request).
    lines: Mapped[list[SubscriptionRequestLine]] = relationship(
        cascade="all, delete-orphan", order_by="SubscriptionRequestLine.id", lazy="selectin"
    )
    # The requester, for lists that show people rather than ids (read only).
    user: Mapped[User] = relationship(foreign_keys=[user_id], viewonly=True, lazy="selectin")


class SubscriptionRequestLine(Base):
    __tablename__ = "subscription_request_lines"
    __table_args__ = (CheckConstraint(one_of("level", LEVELS), name="level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("subscription_requests.id"), index=True)
    space_code: Mapped[str] = mapped_column(ForeignKey("spaces.code"))
    # NULL: all services of the structure.
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"))
    level: Mapped[str] = mapped_column(String(10))


class Invitation(Base):
    """A manager's offer to attach an account that is not the structure's to
    attach at once (docs/decisions.md, "Consent"). It grants nothing: the
    person accepts it (the attachment is then made, with this role, scope and
    dates) or refuses it; a manager may withdraw it; it expires."""

    __tablename__ = "invitations"
    __table_args__ = (
        # One pending invitation per person and structure.
        Index(
            "uq_invitations_pending",
            "user_id",
            "structure_id",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        CheckConstraint(one_of("status", INVITATION_STATUSES), name="status"),
        CheckConstraint(one_of("role", ("secondary", "simple")), name="role"),
        CheckConstraint("valid_until IS NULL OR valid_until >= valid_from", name="dates"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id"), index=True)
    role: Mapped[str] = mapped_column(String(10))
    # True: the whole structure; False: the services listed in `services`.
    whole_structure: Mapped[bool] = mapped_column(Boolean, default=True)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    comment: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # When and by whom it was accepted, refused, withdrawn (NULL when it expired).
    decided_at: Mapped[dt.datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    services: Mapped[list[InvitationService]] = relationship(
        cascade="all, delete-orphan", order_by="InvitationService.service_id"
    )


class InvitationService(Base):
    __tablename__ = "invitation_services"

    invitation_id: Mapped[int] = mapped_column(ForeignKey("invitations.id"), primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), primary_key=True)
