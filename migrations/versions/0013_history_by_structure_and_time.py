"""history by structure and time: an index for a structure's history, newest first

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 22:10:00.000000

GET /v1/structures/{id}/history reads one structure's entries ordered by
(created_at, id) descending. With only the single-column indexes on
structure_id and created_at, the database fetched every entry of the
structure and sorted them for each page (17 ms for a late page of a structure
with 21,000 entries on SQLite); with (structure_id, created_at, id) it walks
the index in order and stops at the page (docs/performance.md, "Manager API").
The history of one user (as actor or target) was a scan of the structure's
entries: actor_id and target_user_id get an index each, which both backends
combine for the OR.
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None
# Additive (an index): older code runs on this schema.
compatible_with = "0005"

INDEXES = {
    "ix_history_entries_structure_id_created_at": ["structure_id", "created_at", "id"],
    "ix_history_entries_actor_id": ["actor_id"],
    "ix_history_entries_target_user_id": ["target_user_id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "history_entries", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="history_entries")
