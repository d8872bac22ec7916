"""policy versions: the policy files as applied, versioned and audited

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:00:00.000000

Adds `policy_versions` (each set of policy files applied: who, when, digest, the
files themselves, the decisions it changed), the `policy_version` in force on
the policy_revision row, and the change-log scope 'policy' (a revision that
changed the policy set, not the facts of the decision index). See
docs/operations.md, "Policy versions".

(Written in parallel with 0006 and first chained on 0005; re-chained on 0006
when the two branches merged. Neither touches what the other adds.)
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
# Additive: code at 0005 runs on this schema (a new table, a nullable column,
# and a change-log scope it skips), as it runs on 0006's (which declares 0005
# too, docs/operations.md "The declaration"), and so does code at 0006.
compatible_with = "0005"

OLD_SCOPES = "scope IN ('user', 'structure', 'membership', 'all')"
NEW_SCOPES = "scope IN ('user', 'structure', 'membership', 'all', 'policy')"


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("applied_by", sa.String(length=200), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("rollback_of", sa.Integer(), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_policy_versions")),
    )
    with op.batch_alter_table("policy_revision") as batch:
        batch.add_column(sa.Column("policy_version", sa.Integer(), nullable=True))
    with op.batch_alter_table("policy_changes") as batch:
        batch.drop_constraint(op.f("ck_policy_changes_scope"), type_="check")
        batch.create_check_constraint(op.f("ck_policy_changes_scope"), NEW_SCOPES)


def downgrade() -> None:
    op.execute("DELETE FROM policy_changes WHERE scope = 'policy'")
    with op.batch_alter_table("policy_changes") as batch:
        batch.drop_constraint(op.f("ck_policy_changes_scope"), type_="check")
        batch.create_check_constraint(op.f("ck_policy_changes_scope"), OLD_SCOPES)
    with op.batch_alter_table("policy_revision") as batch:
        batch.drop_column("policy_version")
    op.drop_table("policy_versions")
