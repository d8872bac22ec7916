"""Structures, their services, the space catalogue and the spaces opened on them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, one_of, utcnow

IDENTIFIER_TYPES = ("SIRET", "UE_HORS_FRANCE", "HORS_UE", "RIDET", "TAHITI", "AUTRE", "PARTICULIER")
STRUCTURE_KINDS = ("public", "private")
STRUCTURE_STATUSES = ("active", "inactive")


class Space(Base):
    """One entry of the space catalogue; rows mirror `policies/spaces.yaml`."""

    __tablename__ = "spaces"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    public_only: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_by_default: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Structure(Base):
    __tablename__ = "structures"
    __table_args__ = (
        UniqueConstraint("identifier_type", "identifier_value", name="identifier"),
        CheckConstraint(one_of("identifier_type", IDENTIFIER_TYPES), name="identifier_type"),
        CheckConstraint(one_of("kind", STRUCTURE_KINDS), name="kind"),
        CheckConstraint(one_of("status", STRUCTURE_STATUSES), name="status"),
        CheckConstraint("length(identifier_value) > 0", name="identifier_value"),
        CheckConstraint("length(designation) > 0", name="designation"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    identifier_type: Mapped[str] = mapped_column(String(20))
    identifier_value: Mapped[str] = mapped_column(String(80))
    designation: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="active")
    # Public structures run through the state's central pipeline (guide: their
    # principal may not deactivate their account, nor change the identifier).
    centrally_managed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Settings from the guide's "paramètres" tab.
    invoice_requires_service: Mapped[bool] = mapped_column(Boolean, default=False)
    legal_commitment_required: Mapped[bool] = mapped_column(Boolean, default=False)
    # Identifier change: the new structure points to its origin, and back.
    origin_id: Mapped[int | None] = mapped_column(ForeignKey("structures.id"))
    successor_id: Mapped[int | None] = mapped_column(ForeignKey("structures.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The designation folded for accent- and case-insensitive search (authz/textkeys.py).
    designation_key: Mapped[str | None] = mapped_column(Text)

    services: Mapped[list[Service]] = relationship(
        back_populates="structure", order_by="Service.code"
    )
    default_spaces: Mapped[list[StructureDefaultSpace]] = relationship(
        cascade="all, delete-orphan", order_by="StructureDefaultSpace.space_code"
    )
    opened_spaces: Mapped[list[OpenedSpace]] = relationship(
        cascade="all, delete-orphan", order_by="OpenedSpace.id"
    )


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (
        UniqueConstraint("structure_id", "code", name="code"),
        CheckConstraint("length(code) > 0", name="code_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Code and label folded for accent- and case-insensitive search (authz/textkeys.py).
    code_key: Mapped[str | None] = mapped_column(Text)
    label_key: Mapped[str | None] = mapped_column(Text)

    structure: Mapped[Structure] = relationship(back_populates="services")


# Service codes are unique per structure whatever their case: the API finds a
# service by its code without case (migration 0010).
Index("uq_services_code_nocase", Service.structure_id, func.lower(Service.code), unique=True)


class StructureDefaultSpace(Base):
    """Spaces for which a subscription request is created when a user is attached."""

    __tablename__ = "structure_default_spaces"

    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id"), primary_key=True)
    space_code: Mapped[str] = mapped_column(ForeignKey("spaces.code"), primary_key=True)


class OpenedSpace(Base):
    """A space opened on a whole structure (service_id NULL) or on one service."""

    __tablename__ = "opened_spaces"
    __table_args__ = (
        Index(
            "uq_opened_spaces_structure",
            "structure_id",
            "space_code",
            unique=True,
            sqlite_where=text("service_id IS NULL"),
            postgresql_where=text("service_id IS NULL"),
        ),
        Index(
            "uq_opened_spaces_service",
            "structure_id",
            "service_id",
            "space_code",
            unique=True,
            sqlite_where=text("service_id IS NOT NULL"),
            postgresql_where=text("service_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id"), index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"))
    space_code: Mapped[str] = mapped_column(ForeignKey("spaces.code"))
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
