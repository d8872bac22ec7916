"""Engine, sessions and schema migrations (Alembic is the only way the schema is made)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings, shipped


def make_engine(settings: Settings, *, for_reads: bool = False) -> Engine:
    """The engine for `settings`. On SQLite, write transactions take the write lock
    at BEGIN; `for_reads` gives an engine whose transactions only read (deferred
    BEGIN, so they never wait for or block writers in WAL mode)."""
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN, which lets two writers
        # read the same row before either writes; take the write lock up front.
        begin = "BEGIN" if for_reads else "BEGIN IMMEDIATE"
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see above)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(engine: Engine | None, *, script_location: str | Path | None = None):
    """Alembic's configuration: the shipped alembic.ini and migrations (or the
    migrations folder `script_location`), migrating through `engine`."""
    cfg = AlembicConfig(str(shipped("alembic.ini")))
    cfg.set_main_option("script_location", str(script_location or shipped("migrations")))
    cfg.attributes["engine"] = engine
    return cfg


# --- one schema change at a time ------------------------------------------------

# Key of the PostgreSQL advisory lock that serialises schema changes and the
# space catalogue sync between processes: the bytes "authzmig" as a signed bigint.
SCHEMA_LOCK_KEY = int.from_bytes(b"authzmig", "big", signed=True)


def lock_schema(conn: Connection, on_wait: Callable[[], None] | None = None) -> None:
    """Hold the schema lock until the end of `conn`'s current transaction; wait
    for it if another process holds it (`on_wait` is called first).

    PostgreSQL: a transaction-level advisory lock, released by the commit that
    makes the change visible. SQLite: the transaction already holds the
    database's write lock (our engines BEGIN IMMEDIATE), which is the lock."""
    if conn.dialect.name != "postgresql":
        return
    if not conn.execute(select(func.pg_try_advisory_xact_lock(SCHEMA_LOCK_KEY))).scalar():
        if on_wait is not None:
            on_wait()
        conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))


def _database_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) or None


def upgrade(
    engine: Engine,
    revision: str = "head",
    *,
    script_location: str | Path | None = None,
    on_wait: Callable[[], None] | None = None,
) -> tuple[str | None, str | None]:
    """Bring the schema to `revision` (idempotent); returns the database's
    revision before and after.

    Several processes may call this at once (instances starting together): the
    first takes the schema lock and migrates in one transaction, the others wait
    for its commit, then find nothing left to do."""
    cfg = alembic_config(engine, script_location=script_location)
    with engine.connect() as conn, conn.begin():
        lock_schema(conn, on_wait)
        before = _database_revision(conn)
        # Alembic runs in this transaction (it does not commit an external one).
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        after = _database_revision(conn)
    return before, after


def schema_is_current(engine: Engine) -> bool:
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as conn:
        current = _database_revision(conn)
    return current is not None and set(current.split(",")) == set(script.get_heads())
