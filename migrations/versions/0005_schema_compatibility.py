"""schema compatibility: which code may still run on the schema

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:30:00.000000

Adds the single-row table in which the migrations environment (env.py) records,
after each migration, the oldest revision whose code still runs on the schema:
the `compatible_with` declared below, which every migration from this one on
declares (docs/operations.md, "Expand, then contract").
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
# Additive: code at 0004 runs on this schema (it never reads the new table).
compatible_with = "0004"


def upgrade() -> None:
    op.create_table(
        "schema_compatibility",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.Column("compatible_with", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_schema_compatibility_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schema_compatibility")),
    )


def downgrade() -> None:
    op.drop_table("schema_compatibility")
