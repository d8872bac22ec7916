"""decision log: the decisions taken for callers, when AUTHZ_DECISION_LOG records them

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 18:30:00.000000

Adds `decision_log`: one row per recorded decision (who asked, the question,
the answer with its rule or reason, the revision and policy version, the
request id), written in batches by each process's background writer, pruned by
`authz maintenance` (docs/operations.md, "Decision log"). No foreign keys: a
record outlives the rows it names.

(Written in parallel with 0008 and 0009 and chained on 0007; to be re-chained
on the last of them when the branches merge. It touches nothing they add.)
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
# Additive (a new table nobody else reads): the code 0008 declared still runs
# on this schema, as does code at 0008.
compatible_with = "0005"

APIS = "api IN ('check', 'batch', 'permissions', 'access', 'authzen')"


def upgrade() -> None:
    op.create_table(
        "decision_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("api", sa.String(length=12), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("caller_user_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("structure_id", sa.Integer(), nullable=True),
        sa.Column("service", sa.String(length=60), nullable=True),
        sa.Column("space", sa.String(length=60), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.String(length=300), nullable=True),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.CheckConstraint(APIS, name=op.f("ck_decision_log_api")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_log")),
    )
    op.create_index(op.f("ix_decision_log_decided_at"), "decision_log", ["decided_at"])
    op.create_index(
        "ix_decision_log_structure_id_decided_at", "decision_log", ["structure_id", "decided_at"]
    )
    op.create_index("ix_decision_log_user_id_decided_at", "decision_log", ["user_id", "decided_at"])


def downgrade() -> None:
    op.drop_table("decision_log")
