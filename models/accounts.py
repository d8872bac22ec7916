"""User accounts, their credentials, log-in throttling and client applications."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, one_of, utcnow

USER_STATUSES = ("pending", "active", "inactive", "closed")
USER_KINDS = ("person", "technical")
PLATFORM_ROLES = ("operator", "security_reviewer")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # Login emails are stored lower-cased, so the unique key is case-insensitive.
        CheckConstraint("login_email = lower(login_email)", name="login_email_lower"),
        CheckConstraint("length(login_email) >= 3", name="login_email_len"),
        CheckConstraint(one_of("status", USER_STATUSES), name="status"),
        CheckConstraint(one_of("kind", USER_KINDS), name="kind"),
        CheckConstraint(
            f"platform_role IS NULL OR {one_of('platform_role', PLATFORM_ROLES)}",
            name="platform_role",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    login_email: Mapped[str] = mapped_column(String(254), unique=True)
    contact_email: Mapped[str] = mapped_column(String(254))
    last_name: Mapped[str] = mapped_column(String(100))
    first_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(10), default="person")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    # Platform-wide role, given only from the command line.
    platform_role: Mapped[str | None] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    activated_at: Mapped[dt.datetime | None]
    deactivated_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    # The names folded for accent- and case-insensitive search (authz/textkeys.py
    # fills them on every ORM write; NULL only for rows bulk-written without them).
    last_name_key: Mapped[str | None] = mapped_column(Text)
    first_name_key: Mapped[str | None] = mapped_column(Text)
    # The structure whose manager created this account (POST /v1/accounts with
    # structure_id); NULL for a sign-up. Decides what that structure's managers
    # may do with it (docs/decisions.md, "Consent").
    created_for_structure_id: Mapped[int | None] = mapped_column(ForeignKey("structures.id"))
    # The login email's look-alike key (authz/logins.py: skeleton): two logins
    # with the same key are refused as confusable. NULL only for rows written
    # without it.
    login_skeleton: Mapped[str | None] = mapped_column(String(254), index=True)


class AuthToken(Base):
    """A log-in bearer token; only its SHA-256 digest is stored."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class MailedLink:
    """The columns of a single-use link mailed to a person: only the token's
    SHA-256 digest is stored; used once, before it expires."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class ActivationToken(MailedLink, Base):
    """A single-use activation link."""

    __tablename__ = "activation_tokens"


class PasswordResetToken(MailedLink, Base):
    """A single-use "forgot password" link."""

    __tablename__ = "password_reset_tokens"


class ConsoleSession(Base):
    """A browser session of the manager console (the cookie's value is shown
    once, only its SHA-256 digest is stored); ends when revoked (log-out,
    password reset), at expires_at, or when unused for the idle timeout."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class LoginThrottle(Base):
    """Failed log-ins counted per key ("email:<login>" or "ip:<address>")."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[dt.datetime]
    locked_until: Mapped[dt.datetime | None]


class ClientApplication(Base):
    """An application asking for decisions with an API key (argon2id-hashed)."""

    __tablename__ = "client_applications"
    __table_args__ = (CheckConstraint("length(name) > 0", name="name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Public part of the key, used to find the row before verifying the hash.
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
