"""decision log: a request's decisions packed in one row (what SQLite's writer writes)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 00:20:00.000000

Adds `decision_log.packed`: when not NULL, the row holds a whole request's
decisions (two or more) as a JSON object (authz.decision_log, QUESTION_KEYS:
a list per question field, or the one value all decisions have, and a list
`decision` indexing `decisions`, the distinct answers); the row's own columns
then give what the
decisions share (time, API, caller, request id) and, for `user_id` and
`structure_id`, the value every decision has, or NULL. `action`, `allowed` and
`revision` become nullable for such rows only (a check constraint keeps them
required on a row of one decision). A packed row's id is the id of its last
decision, and the ids before it, one per decision, are its own: ids stay
unique and in the order of writing.

Why: on SQLite the insert runs in the worker's process and costs 4 to 5 µs a
row whatever the row holds; one row per request instead of per decision is
what brings recording every decision of batch checks within issue 12's budget
(docs/decisions.md, "Decision log on SQLite"). The PostgreSQL writer keeps a
row per decision (its COPY is within the budget and its indexes serve the
filters); the schema is the same on both, and the readers
(authz.decision_log) expand packed rows wherever they find them.

A partial index on `decided_at` of the packed rows lets readers find them in
a time window without reading the one-decision rows. On SQLite making the
columns nullable rebuilds the table (a copy of the log, under the schema lock).

Compatibility: additive for writers (older code writes rows as before). Older
code reading the log shows a packed row as one record with the shared fields
only, until it is replaced: read the log through upgraded instances during a
rolling upgrade (docs/operations.md, "Migration 0014").
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None
compatible_with = "0005"

ONE_DECISION = (
    "packed IS NOT NULL OR (action IS NOT NULL AND allowed IS NOT NULL AND revision IS NOT NULL)"
)
RELAXED = {"action": sa.String(length=60), "allowed": sa.Boolean(), "revision": sa.BigInteger()}


def _unpack(packed: dict) -> list[list]:
    """A packed row's decisions, each in the order of `columns` below (the
    layout of authz.decision_log at 0014, copied: a migration does not import
    code that moves on). A question field is a list, one value per decision,
    or the one value they all have."""
    answers = packed["decisions"]
    which = packed["decision"]
    keys = ("user_id", "structure_id", "service", "space", "action")
    columns = [
        packed[key] if isinstance(packed[key], list) else [packed[key]] * len(which) for key in keys
    ]
    return [[*question, *answers[k]] for *question, k in zip(*columns, which, strict=True)]


def upgrade() -> None:
    with op.batch_alter_table("decision_log") as batch:
        batch.add_column(sa.Column("packed", sa.Text(), nullable=True))
        for name, type_ in RELAXED.items():
            batch.alter_column(name, existing_type=type_, nullable=True)
        batch.create_check_constraint(op.f("ck_decision_log_one_decision"), ONE_DECISION)
    op.create_index(
        "ix_decision_log_packed_decided_at",
        "decision_log",
        ["decided_at"],
        sqlite_where=sa.text("packed IS NOT NULL"),
        postgresql_where=sa.text("packed IS NOT NULL"),
    )


def downgrade() -> None:
    # A packed row cannot be one decision again: they are expanded first.
    bind = op.get_bind()
    columns = (
        "user_id",
        "structure_id",
        "service",
        "space",
        "action",
        "allowed",
        "rule",
        "reason",
        "revision",
        "policy_version",
    )
    packed = bind.execute(
        sa.text(
            "SELECT id, decided_at, api, client_id, caller_user_id, request_id, packed "
            "FROM decision_log WHERE packed IS NOT NULL"
        )
    ).all()
    if packed:
        table = sa.table(
            "decision_log",
            *(
                sa.column(c)
                for c in ("id", "decided_at", "api", "client_id", "caller_user_id", "request_id")
            ),
            *(sa.column(c) for c in columns),
        )
        rows = []
        for row_id, decided_at, api, client_id, caller_user_id, request_id, text in packed:
            items = _unpack(json.loads(text))
            first = row_id - len(items) + 1
            for i, item in enumerate(items):
                rows.append(
                    {
                        "id": first + i,
                        "decided_at": decided_at,
                        "api": api,
                        "client_id": client_id,
                        "caller_user_id": caller_user_id,
                        "request_id": request_id,
                        **dict(zip(columns, item, strict=True)),
                    }
                )
        bind.execute(sa.text("DELETE FROM decision_log WHERE packed IS NOT NULL"))
        op.bulk_insert(table, rows)
    op.drop_index("ix_decision_log_packed_decided_at", table_name="decision_log")
    with op.batch_alter_table("decision_log") as batch:
        batch.drop_constraint(op.f("ck_decision_log_one_decision"), type_="check")
        for name, type_ in RELAXED.items():
            batch.alter_column(name, existing_type=type_, nullable=False)
        batch.drop_column("packed")
