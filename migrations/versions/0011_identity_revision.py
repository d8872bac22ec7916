"""identity revision: a counter the database bumps whenever a credential or an account changes

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 21:00:00.000000

Adds `policy_revision.identity_revision` and triggers that increment it in the
transaction of every change that can make a presented credential invalid: a
bearer token revoked, its expiry moved or the row deleted; an account's status
changed or the account deleted; a client application's key replaced, the
client revoked or deleted. Each process caches the identity a credential
resolves to and drops that cache as soon as the counter moves, read with the
policy revision in the poll every request already makes (docs/decisions.md,
"Identity cache"). Triggers, not application code, so that no writer (older
releases during a rolling deploy, raw SQL, a script) can forget the bump.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None
# Additive (a column with a default and triggers that keep it): older code runs
# on this schema, and its writes bump the counter too (the triggers do it).
compatible_with = "0005"

BUMP = "UPDATE policy_revision SET identity_revision = identity_revision + 1 WHERE id = 1"

# (table, trigger suffix, event): the changes that can invalidate a credential.
EVENTS = [
    ("auth_tokens", "update", "UPDATE OF revoked_at, expires_at, user_id, token_hash"),
    ("auth_tokens", "delete", "DELETE"),
    ("users", "update", "UPDATE OF status"),
    ("users", "delete", "DELETE"),
    ("client_applications", "update", "UPDATE OF active, key_hash, key_id"),
    ("client_applications", "delete", "DELETE"),
]


def _name(table: str, suffix: str) -> str:
    return f"identity_changed_{table}_{suffix}"


def upgrade() -> None:
    with op.batch_alter_table("policy_revision") as batch:
        batch.add_column(
            sa.Column("identity_revision", sa.BigInteger(), nullable=False, server_default="0")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION identity_changed() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
        # Constraint triggers, deferred: the bump runs at commit, so the row lock
        # it takes on policy_revision is held from the commit on, as a rights
        # change's own bump is, never from the middle of a transaction that then
        # goes on to lock other rows (which could deadlock against a rights change
        # that bumped first). One per changed row; an UPDATE that leaves the
        # columns as they were does not fire.
        for table, suffix, event in EVENTS:
            when = _changed(event, "IS DISTINCT FROM")
            op.execute(
                f"CREATE CONSTRAINT TRIGGER {_name(table, suffix)} AFTER {event} ON {table} "
                f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW {when}"
                "EXECUTE FUNCTION identity_changed()"
            )
        return
    for table, suffix, event in EVENTS:
        # SQLite: one writer at a time (no deadlock to avoid), row triggers only.
        when = _changed(event, "IS NOT")
        op.execute(
            f"CREATE TRIGGER {_name(table, suffix)} AFTER {event} ON {table} "
            f"FOR EACH ROW {when}BEGIN {BUMP}; END"
        )


def _changed(event: str, differs: str) -> str:
    """The WHEN clause of an UPDATE OF trigger: one of its columns changed."""
    if not event.startswith("UPDATE OF "):
        return ""
    columns = [c.strip() for c in event.removeprefix("UPDATE OF ").split(",")]
    return "WHEN (" + " OR ".join(f"OLD.{c} {differs} NEW.{c}" for c in columns) + ") "


def downgrade() -> None:
    for table, suffix, _event in EVENTS:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {_name(table, suffix)} ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {_name(table, suffix)}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS identity_changed()")
    with op.batch_alter_table("policy_revision") as batch:
        batch.drop_column("identity_revision")
