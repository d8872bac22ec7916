"""search keys: folded names, designations and services for user search

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 02:10:00.000000

Adds the accent- and case-insensitive search columns kept by authz/textkeys.py
(then authz/search.py) and fills them for the rows that already exist. The
folding is copied here (not imported) so this migration keeps doing what it did
when it was written.
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# table → {source column: key column}
KEYS = {
    "users": {"last_name": "last_name_key", "first_name": "first_name_key"},
    "structures": {"designation": "designation_key"},
    "services": {"code": "code_key", "label": "label_key"},
}


def fold(text):
    """Same as authz.textkeys.fold (then authz.search.fold) at revision 0004."""
    folded = unicodedata.normalize("NFKD", text or "").casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.split())


def upgrade() -> None:
    for table_name, keys in KEYS.items():
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            for key in keys.values():
                batch_op.add_column(sa.Column(key, sa.Text(), nullable=True))

    conn = op.get_bind()
    for table_name, keys in KEYS.items():
        table = sa.table(
            table_name,
            sa.column("id", sa.Integer()),
            *(sa.column(c, sa.Text()) for pair in keys.items() for c in pair),
        )
        rows = conn.execute(sa.select(table.c.id, *(table.c[s] for s in keys))).all()
        for row in rows:
            conn.execute(
                table.update()
                .where(table.c.id == row.id)
                .values({key: fold(row._mapping[source]) for source, key in keys.items()})  # noqa: SLF001 - Row's public API
            )


def downgrade() -> None:
    for table_name, keys in KEYS.items():
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            for key in keys.values():
                batch_op.drop_column(key)
