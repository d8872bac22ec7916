"""History of manager actions, the mail outbox and the policy revision counter."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, one_of, utcnow

if TYPE_CHECKING:
    from .accounts import User

MAIL_STATUSES = ("pending", "sent")


class HistoryEntry(Base):
    """One action on a structure. Written once, never updated through the API."""

    __tablename__ = "history_entries"
    __table_args__ = (
        # A structure's history, newest first, read page by page (migration 0013).
        Index("ix_history_entries_structure_id_created_at", "structure_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    structure_id: Mapped[int | None] = mapped_column(ForeignKey("structures.id"), index=True)
    # Indexed, as target_user_id: a history filtered by user (migration 0013).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # Machine-readable action name (e.g. "structure.created").
    action: Mapped[str] = mapped_column(String(60), index=True)
    target_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    request_kind: Mapped[str | None] = mapped_column(String(20))
    request_id: Mapped[int | None] = mapped_column(Integer)
    # Vocabulary shown to managers: Validated, Refused, Deactivated, Deleted…
    comment: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)

    # Who acted and on whom, for lists that show people rather than ids (read only).
    actor: Mapped[User | None] = relationship(
        foreign_keys=[actor_id], viewonly=True, lazy="selectin"
    )
    target_user: Mapped[User | None] = relationship(
        foreign_keys=[target_user_id], viewonly=True, lazy="selectin"
    )


class OutboxMail(Base):
    """A mail to send, written in the transaction of the change that causes it."""

    __tablename__ = "outbox_mails"
    __table_args__ = (CheckConstraint(one_of("status", MAIL_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    # A sender claims a row by moving this forward (conditional update).
    claimed_until: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]


class PolicyRevision(Base):
    """Single row: bumped in the transaction of every change of rights."""

    __tablename__ = "policy_revision"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The policy set in force (policy_versions.version), changed with a bump of
    # the revision; null: none stored yet (the service decides with its files).
    policy_version: Mapped[int | None] = mapped_column(Integer)
    # Bumped by database triggers (migration 0011) in the transaction of every
    # change that can invalidate a credential: a token revoked or deleted, an
    # account's status changed, a client's key replaced or the client revoked.
    # Each process drops its identity cache when it moves (authz/identities.py).
    identity_revision: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class PolicyVersion(Base):
    """A set of policy files as applied (`authz policy apply` or `rollback`, or
    `authz db upgrade` storing the first): written once, never changed. Only a
    set whose assertion tests passed is stored."""

    __tablename__ = "policy_versions"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # sha256 of the files (authz.engine.policy.digest), hex.
    digest: Mapped[str] = mapped_column(String(64))
    # File name (model.conf, tests/decisions.yaml...) -> its text.
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    # Who applied it (the --actor, or the operating-system user), and when.
    applied_by: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The policy revision from which every worker decides with it.
    revision: Mapped[int] = mapped_column(BigInteger)
    # What applied it, e.g. "authz policy apply /etc/authz/policies".
    source: Mapped[str] = mapped_column(String(300))
    # The older version this one re-applies (`authz policy rollback`), if any.
    rollback_of: Mapped[int | None] = mapped_column(Integer)
    # The decisions it changed on the database when applied (`authz policy diff`):
    # {"count": n, "decisions": ["user on structure: space:action: deny -> allow", ...]}.
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)


class PolicyChange(Base):
    """What a revision changed, so every worker updates only that part of its
    decision index. scope: 'user' (a = user id), 'structure' (a = structure id),
    'membership' (a = user id, b = structure id), 'all', or 'policy' (the
    policy set changed: policy_revision.policy_version; no fact did)."""

    __tablename__ = "policy_changes"
    __table_args__ = (
        CheckConstraint(
            one_of("scope", ("user", "structure", "membership", "all", "policy")), name="scope"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, index=True)
    scope: Mapped[str] = mapped_column(String(12))
    a: Mapped[int | None] = mapped_column(BigInteger)
    b: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SchemaCompatibility(Base):
    """Single row, written by the migrations environment after every migration:
    the revision the schema is at and the oldest revision whose code still runs
    on it (that migration's `compatible_with`). Code older than the schema reads
    it to know whether it may keep serving (docs/operations.md)."""

    __tablename__ = "schema_compatibility"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    revision: Mapped[str] = mapped_column(String(32))
    compatible_with: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


DECISION_APIS = ("check", "batch", "permissions", "access", "authzen")


class DecisionRecord(Base):
    """One decision taken for a caller (the decision log, AUTHZ_DECISION_LOG):
    written in batches off the request, never updated, deleted after
    AUTHZ_DECISION_LOG_RETENTION_DAYS. No foreign keys: a record outlives the
    rows it names, and writing it checks nothing.

    The (structure, time) and (subject, time) indexes exist on PostgreSQL only
    (migration 0012 drops them on SQLite): on SQLite the insert runs in the
    worker's process and those two random-key indexes were most of what
    recording cost a batch check; a filter on the subject or the structure
    scans the time window there (docs/decisions.md, "Decision log on SQLite").

    A row with `packed` (migration 0014; what the SQLite writer writes for a
    request of two decisions or more) holds a whole request's decisions as a
    JSON array of arrays in the order of authz.decision_log.ITEM_COLUMNS; its
    own columns give what they share: time, API, caller, request id, and the
    user_id / structure_id every decision has (NULL if they differ). Its id is
    its last decision's; the ids before it, one per decision, are its others.
    Read the log through authz.decision_log, which expands them."""

    __tablename__ = "decision_log"
    __table_args__ = (
        CheckConstraint(one_of("api", DECISION_APIS), name="api"),
        CheckConstraint(
            "packed IS NOT NULL OR "
            "(action IS NOT NULL AND allowed IS NOT NULL AND revision IS NOT NULL)",
            name="one_decision",
        ),
        Index(
            "ix_decision_log_packed_decided_at",
            "decided_at",
            sqlite_where=text("packed IS NOT NULL"),
            postgresql_where=text("packed IS NOT NULL"),
        ),
        Index("ix_decision_log_structure_id_decided_at", "structure_id", "decided_at").ddl_if(
            dialect="postgresql"
        ),
        Index("ix_decision_log_user_id_decided_at", "user_id", "decided_at").ddl_if(
            dialect="postgresql"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    decided_at: Mapped[dt.datetime] = mapped_column(index=True)
    # Which API answered (check, batch, permissions, access, authzen).
    api: Mapped[str] = mapped_column(String(12))
    # Who asked: a client application, or a person about themself.
    client_id: Mapped[int | None] = mapped_column(Integer)
    caller_user_id: Mapped[int | None] = mapped_column(Integer)
    # The question: subject, structure, service code, space (None: a management
    # action on the structure), action.
    user_id: Mapped[int | None] = mapped_column(Integer)
    structure_id: Mapped[int | None] = mapped_column(Integer)
    service: Mapped[str | None] = mapped_column(String(60))
    space: Mapped[str | None] = mapped_column(String(60))
    action: Mapped[str | None] = mapped_column(String(60))
    # The answer: allowed by `rule`, or denied for `reason`.
    allowed: Mapped[bool | None]
    rule: Mapped[str | None] = mapped_column(String(300))
    reason: Mapped[str | None] = mapped_column(String(300))
    revision: Mapped[int | None] = mapped_column(BigInteger)
    policy_version: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(128))
    # A request's decisions, packed (see above); NULL on a row of one decision.
    packed: Mapped[str | None] = mapped_column(Text)
