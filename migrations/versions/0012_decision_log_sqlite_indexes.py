"""decision log on SQLite: only the time index, so that recording every decision stays cheap

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 22:10:00.000000

On SQLite only, drops `ix_decision_log_structure_id_decided_at` and
`ix_decision_log_user_id_decided_at`. There the decision log's writer inserts
in the worker's own process, and keeping those two indexes (random keys: every
batch of rows touches pages all over them) cost more CPU per recorded decision
than the decision itself for batch checks (issue 12's budget: 15 % of check
throughput). The time index stays: retention and the time window of every
query use it; a filter on the subject or the structure scans that window
(docs/decisions.md, "Decision log on SQLite"). PostgreSQL keeps all three: its
inserts run in the server, and the writer's binary COPY is within the budget
with them. models.operations.DecisionRecord declares the two as PostgreSQL-only.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None
# Fewer indexes, same table: older code reads and writes it as before.
compatible_with = "0005"

DROPPED = [
    ("ix_decision_log_structure_id_decided_at", ["structure_id", "decided_at"]),
    ("ix_decision_log_user_id_decided_at", ["user_id", "decided_at"]),
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, _columns in DROPPED:
        op.drop_index(name, table_name="decision_log")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, columns in DROPPED:
        op.create_index(name, "decision_log", columns)
