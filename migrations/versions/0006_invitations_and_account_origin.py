"""invitations, the structure an account was created for, login look-alike keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 16:00:00.000000

Consent before power over an account (issue 10, docs/decisions.md "Consent"):

- `invitations` (+ `invitation_services`): a manager's direct attachment of an
  account that is not theirs to attach at once; it grants nothing until the
  person accepts it.
- `users.created_for_structure_id`: the structure whose manager created the
  account, filled here from the `account.created` history entries.
- `users.login_skeleton`: the look-alike key of the login email, filled here
  for existing accounts (the key function is copied below, like 0004's
  folding, so this migration keeps doing what it did when it was written; it
  reads the confusables table shipped in authz/data/).
"""

import unicodedata
from importlib import resources

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
# Additive: code at 0005 runs on this schema (new tables, nullable columns).
compatible_with = "0005"


def _confusables():
    table = {}
    text = resources.files("authz").joinpath("data", "confusables.tsv").read_text("utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, prototype = line.split("\t")[:2]
            table[int(code.removeprefix("U+"), 16)] = prototype
    return table


def skeleton(email, table):
    """Same as authz.logins.skeleton at revision 0006."""
    folded = unicodedata.normalize("NFKC", email or "").strip().lower().casefold()
    return unicodedata.normalize("NFKC", folded.translate(table)).casefold()


def upgrade() -> None:
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("structure_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("whole_structure", sa.Boolean(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("role IN ('secondary', 'simple')", name=op.f("ck_invitations_role")),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'refused', 'withdrawn', 'expired')",
            name=op.f("ck_invitations_status"),
        ),
        sa.CheckConstraint(
            "valid_until IS NULL OR valid_until >= valid_from", name=op.f("ck_invitations_dates")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_invitations_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_invitations_decided_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["structure_id"], ["structures.id"], name=op.f("fk_invitations_structure_id_structures")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_invitations_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitations_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_invitations_structure_id"), ["structure_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_invitations_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            "uq_invitations_pending",
            ["user_id", "structure_id"],
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )

    op.create_table(
        "invitation_services",
        sa.Column("invitation_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invitation_id"],
            ["invitations.id"],
            name=op.f("fk_invitation_services_invitation_id_invitations"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_invitation_services_service_id_services")
        ),
        sa.PrimaryKeyConstraint("invitation_id", "service_id", name=op.f("pk_invitation_services")),
    )
    # ALTER TABLE … ADD COLUMN with the foreign key inline: a batch operation
    # would rebuild `users` on SQLite, and dropping the old table fails there
    # while other tables' rows point to it.
    fk = op.f("fk_users_created_for_structure_id_structures")
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE users ADD COLUMN created_for_structure_id INTEGER "
            f"CONSTRAINT {fk} REFERENCES structures (id)"
        )
    else:
        op.add_column(
            "users",
            sa.Column(
                "created_for_structure_id",
                sa.Integer(),
                sa.ForeignKey("structures.id", name=fk),
                nullable=True,
            ),
        )
    op.add_column("users", sa.Column("login_skeleton", sa.String(length=254), nullable=True))
    op.create_index(op.f("ix_users_login_skeleton"), "users", ["login_skeleton"], unique=False)

    conn = op.get_bind()
    users = sa.table(
        "users",
        sa.column("id", sa.Integer()),
        sa.column("login_email", sa.String()),
        sa.column("login_skeleton", sa.String()),
        sa.column("created_for_structure_id", sa.Integer()),
    )
    history = sa.table(
        "history_entries",
        sa.column("id", sa.Integer()),
        sa.column("action", sa.String()),
        sa.column("structure_id", sa.Integer()),
        sa.column("target_user_id", sa.Integer()),
    )
    first_creation = (
        sa.select(history.c.structure_id)
        .where(history.c.action == "account.created", history.c.target_user_id == users.c.id)
        .order_by(history.c.id)
        .limit(1)
        .scalar_subquery()
    )
    conn.execute(users.update().values(created_for_structure_id=first_creation))
    table = _confusables()
    for row in conn.execute(sa.select(users.c.id, users.c.login_email)).all():
        conn.execute(
            users.update()
            .where(users.c.id == row.id)
            .values(login_skeleton=skeleton(row.login_email, table))
        )


def downgrade() -> None:
    # On SQLite the batch below rebuilds `users`, which works on an empty
    # database only (roll forward, docs/operations.md).
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_users_created_for_structure_id_structures"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_users_login_skeleton"))
        batch_op.drop_column("login_skeleton")
        batch_op.drop_column("created_for_structure_id")
    op.drop_table("invitation_services")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index("uq_invitations_pending")
        batch_op.drop_index(batch_op.f("ix_invitations_user_id"))
        batch_op.drop_index(batch_op.f("ix_invitations_structure_id"))
        batch_op.drop_index(batch_op.f("ix_invitations_status"))
    op.drop_table("invitations")
