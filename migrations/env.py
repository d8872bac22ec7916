"""Alembic environment: the connection (or engine) comes from the caller, else
from the AUTHZ_* settings.

`authz db upgrade` (authz/db.py `upgrade`) hands in a connection inside a
transaction that holds the schema lock; Alembic then migrates in that
transaction and the caller commits. After migrating, the schema_compatibility
row records which code may still run on the schema (docs/operations.md)."""

from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from authz.config import load_settings
from authz.db import declared_compatibility, make_engine
from models import Base, SchemaCompatibility, utcnow

config = context.config
target_metadata = Base.metadata


def record_compatibility(connection) -> None:
    """Write the `compatible_with` of the revision the schema is now at."""
    table = SchemaCompatibility.__table__
    if not inspect(connection).has_table(table.name):
        return  # before revision 0005
    heads = context.get_context().get_current_heads()
    if len(heads) != 1:
        return
    revision = heads[0]
    floor = declared_compatibility(ScriptDirectory.from_config(config), revision)
    values = {"revision": revision, "compatible_with": floor, "updated_at": utcnow()}
    if connection.execute(table.update().where(table.c.id == 1).values(**values)).rowcount == 0:
        connection.execute(table.insert().values(id=1, **values))


def migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        record_compatibility(connection)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        migrate(connection)
        return
    engine = config.attributes.get("engine") or make_engine(load_settings())
    with engine.connect() as connection:
        migrate(connection)
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; use `authz db upgrade`")
run_migrations_online()
