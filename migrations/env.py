"""Alembic environment: the connection (or engine) comes from the caller, else
from the AUTHZ_* settings.

`authz db upgrade` (authz/db.py `upgrade`) hands in a connection inside a
transaction that holds the schema lock; Alembic then migrates in that
transaction and the caller commits."""

from alembic import context

from authz.config import load_settings
from authz.db import make_engine
from models import Base

config = context.config
target_metadata = Base.metadata


def migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


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
