"""Engine, sessions and schema migrations (Alembic is the only way the schema is made)."""

from __future__ import annotations

import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Result,
    create_engine,
    event,
    func,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.orm import Session, sessionmaker

from models import SchemaCompatibility

from .config import Settings, shipped
from .errors import Unavailable


def make_engine(settings: Settings, *, for_reads: bool = False) -> Engine:
    """The engine for `settings`. On SQLite, write transactions take the write lock
    at BEGIN; `for_reads` gives an engine whose transactions only read (deferred
    BEGIN, so they never wait for or block writers in WAL mode).

    Every connection waits a bounded time (docs/decisions.md, "Bounded waits"):
    on PostgreSQL a statement runs at most AUTHZ_DB_STATEMENT_TIMEOUT_MS and
    waits for a lock at most AUTHZ_DB_LOCK_TIMEOUT_MS, and connecting gives up
    after AUTHZ_DB_CONNECT_TIMEOUT_SECONDS; on SQLite a writer waits for the
    write lock at most AUTHZ_DB_LOCK_TIMEOUT_MS. Past them the driver raises an
    OperationalError, which the API answers with 503."""
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        busy_ms = settings.db_lock_timeout_ms
        engine = create_engine(url, connect_args={"timeout": busy_ms / 1000})
        event.listen(engine, "connect", lambda conn, _record: _sqlite_pragmas(conn, busy_ms))
        # pysqlite's own transaction handling defers BEGIN, which lets two writers
        # read the same row before either writes; take the write lock up front.
        begin = "BEGIN" if for_reads else "BEGIN IMMEDIATE"
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    parsed = make_url(url)
    connect_args = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = settings.db_connect_timeout_seconds
    # Every connection the pool hands out is checked first (a restart or failover
    # of PostgreSQL kills them all) and replaced once older than the setting.
    recycle = settings.database_recycle_seconds or -1
    engine = create_engine(url, pool_pre_ping=True, pool_recycle=recycle, connect_args=connect_args)
    timeouts = (settings.db_statement_timeout_ms, settings.db_lock_timeout_ms)
    event.listen(engine, "connect", lambda conn, _record: _postgresql_timeouts(conn, *timeouts))
    if settings.revision_lease_ms:
        install_commit_wait(engine, settings.revision_lease_ms / 1000)
    return engine


# Engines whose writers wait after each commit (install_commit_wait): the lease
# their readers may take, in seconds.
_LEASES: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
# A lease is measured on the reader's clock, the wait on the writer's: the wait
# is longer by this share and this many seconds (clock rates differ by parts
# per million; scheduling adds a little).
WAIT_MARGIN = (0.1, 0.001)


def install_commit_wait(engine: Engine, lease: float) -> None:
    """Make every transaction of `engine` that wrote wait `lease` (and a margin)
    after its commit, before its connection goes back to the pool and the
    caller goes on: a decider may then answer from a revision read less than
    `lease` ago (Decider's `lease`) and still see every write acknowledged
    before the question (docs/decisions.md, "Revision lease").

    A statement that does not start with SELECT counts as a write (UPDATE,
    INSERT, DELETE, and anything else: a wait too many costs milliseconds, one
    too few a stale answer). The wait happens when the connection is given
    back: at the end of a session's commit, or of an `engine.begin()` block."""
    wait = lease * (1 + WAIT_MARGIN[0]) + WAIT_MARGIN[1]

    def wrote(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip()[:6].upper() != "SELECT":
            conn.info["authz_wrote"] = True

    def committing(conn: Any) -> None:
        if conn.info.pop("authz_wrote", False):
            conn.info["authz_committed"] = True

    def rolled_back(conn: Any) -> None:  # also at the start of every transaction:
        conn.info.pop("authz_wrote", None)  # nothing carried over from an earlier one

    def given_back(_dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop("authz_committed", False):
            time.sleep(wait)

    event.listen(engine, "before_cursor_execute", wrote)
    event.listen(engine, "commit", committing)
    event.listen(engine, "rollback", rolled_back)
    event.listen(engine, "begin", rolled_back)
    event.listen(engine.pool, "checkin", given_back)
    _LEASES[engine] = lease


def lease_of(engine: Engine) -> float:
    """The revision lease `engine`'s writers honour (0: none, poll every time)."""
    return _LEASES.get(engine, 0.0)


def _postgresql_timeouts(
    dbapi_connection: psycopg.Connection[Any], statement_ms: int, lock_ms: int
) -> None:
    """The session's statement and lock timeouts, set once per connection."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false), "
                "set_config('lock_timeout', %s, false)",
                (f"{statement_ms}ms", f"{lock_ms}ms"),
            )
    finally:
        dbapi_connection.autocommit = autocommit


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, busy_ms: int) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see above)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """How many rows an UPDATE or DELETE changed. Session.execute() is typed as
    returning a Result; for those statements it is a CursorResult, which counts
    them (anything else is a programming error)."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"{type(result).__name__} has no row count")
    return result.rowcount


def alembic_config(
    engine: Engine | None, *, script_location: str | Path | None = None
) -> AlembicConfig:
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
# How long `authz db upgrade` waits for SQLite's write lock (another migration).
MIGRATION_BUSY_MS = 120_000


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
        # Waiting for another process's migration is expected: no lock timeout
        # for this wait (AUTHZ_DB_LOCK_TIMEOUT_MS applies again after it).
        saved = conn.execute(text("SELECT current_setting('lock_timeout')")).scalar()
        conn.execute(text("SET LOCAL lock_timeout = 0"))
        conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
        conn.execute(select(func.set_config("lock_timeout", saved, True)))


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
    for its commit, then find nothing left to do. A database already at a newer
    revision that declares itself compatible with this code is left as it is;
    raises Unavailable `schema_incompatible` if it is newer and not compatible."""
    cfg = alembic_config(engine, script_location=script_location)
    with engine.connect() as conn, _waiting_freely(conn), conn.begin():
        if conn.dialect.name == "postgresql":  # a migration may run long
            conn.execute(text("SET LOCAL statement_timeout = 0"))
        lock_schema(conn, on_wait)
        before = _database_revision(conn)
        chain = code_chain(cfg.get_main_option("script_location"))
        if before is not None and before not in chain.known:
            status = _status(conn, chain, before)
            if status.state != "compatible":
                raise Unavailable(status.detail, code=status.code)
            return before, before
        # Alembic runs in this transaction (it does not commit an external one).
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        after = _database_revision(conn)
    return before, after


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the schema lock (waited for without the usual lock
    timeouts, see lock_schema and _waiting_freely); committed on exit."""
    with engine.connect() as conn, _waiting_freely(conn), conn.begin():
        lock_schema(conn)
        yield conn


@contextmanager
def _waiting_freely(conn: Connection) -> Iterator[None]:
    """On SQLite, let this connection wait up to MIGRATION_BUSY_MS for the write
    lock (another process migrating), then give it back its usual busy timeout.
    PostgreSQL's wait for the schema lock is lifted in lock_schema."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the migration's connection is closed")
    usual = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    raw.execute(f"PRAGMA busy_timeout = {MIGRATION_BUSY_MS}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(usual)}")


# --- is the schema one this code runs on? ---------------------------------------
#
# Rolling deploys (docs/operations.md, "Expand, then contract"): the new release
# migrates while instances of the previous one still serve. Each migration file
# declares `compatible_with`, the oldest revision whose code still runs on the
# schema it leaves (its down_revision for an additive change, itself for one that
# removes or changes what older code uses). The migrations environment records
# the declaration of the head it migrated to in the schema_compatibility row,
# because older code does not have the newer migration files to read it from.


@dataclass(frozen=True)
class CodeChain:
    """The migrations this code ships: its head and every revision it knows."""

    head: str
    known: frozenset[str]


@lru_cache(maxsize=8)
def code_chain(script_location: str | None = None) -> CodeChain:
    script = ScriptDirectory.from_config(alembic_config(None, script_location=script_location))
    heads = script.get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads; merge them into one")
    return CodeChain(heads[0], frozenset(s.revision for s in script.walk_revisions()))


def declared_compatibility(script: ScriptDirectory, revision: str) -> str:
    """The `compatible_with` of migration `revision` (itself when undeclared)."""
    module = script.get_revision(revision).module
    return getattr(module, "compatible_with", None) or revision


@dataclass(frozen=True)
class SchemaStatus:
    """current: at this code's head; compatible: at a newer revision declared
    compatible with this code; outdated: empty or older (run `authz db upgrade`);
    incompatible: at a newer revision this code must not run on."""

    state: str
    database: str | None
    code_head: str
    detail: str

    @property
    def usable(self) -> bool:
        return self.state in ("current", "compatible")

    @property
    def code(self) -> str:
        return "schema_incompatible" if self.state == "incompatible" else "schema_outdated"


def schema_status(engine: Engine, *, script_location: str | Path | None = None) -> SchemaStatus:
    """Whether this code may run on the database's schema (see SchemaStatus)."""
    chain = code_chain(str(script_location) if script_location else None)
    with engine.connect() as conn:
        return _status(conn, chain, _database_revision(conn))


def _status(conn: Connection, chain: CodeChain, database: str | None) -> SchemaStatus:
    def status(state: str, detail: str) -> SchemaStatus:
        return SchemaStatus(state, database, chain.head, detail)

    if database == chain.head:
        return status("current", f"The database schema is at revision {database}.")
    if database is None or database in chain.known:
        return status(
            "outdated",
            "The database schema is not at the latest migration: run `authz db upgrade` first.",
        )
    floor = None
    if inspect(conn).has_table(SchemaCompatibility.__tablename__):
        row = conn.execute(
            select(SchemaCompatibility.revision, SchemaCompatibility.compatible_with)
        ).first()
        if row is not None and row.revision == database:
            floor = row.compatible_with
    if floor is not None and floor in chain.known:
        return status(
            "compatible",
            f"The database schema is at revision {database}, newer than this release's "
            f"{chain.head}; it declares code from revision {floor} on compatible.",
        )
    return status(
        "incompatible",
        f"The database schema is at revision {database}, newer than this release's "
        f"{chain.head} and not compatible with it"
        + (f" (it needs code from revision {floor} on)" if floor else "")
        + ": deploy the release that migrated it.",
    )


def probe_database(engine: Engine, timeout_ms: int) -> None:
    """Read the policy revision, as every decision does, giving up after
    `timeout_ms` (PostgreSQL: statement and lock timeouts of this transaction;
    SQLite's reads do not wait for writers). Raises the driver's error."""
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            limit = f"{int(timeout_ms)}ms"
            conn.execute(
                select(
                    func.set_config("statement_timeout", limit, True),
                    func.set_config("lock_timeout", limit, True),
                )
            )
        conn.execute(text("SELECT revision FROM policy_revision WHERE id = 1")).scalar_one()


def schema_is_current(engine: Engine) -> bool:
    """The schema is exactly at this code's head."""
    return schema_status(engine).state == "current"
