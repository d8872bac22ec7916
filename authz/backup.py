"""Backups of an embedded (SQLite) database while the service runs.

SQLite's online backup API copies the database page by page into a new file
while other connections keep reading and writing; the copy is the database as
of one moment (a later write restarts the copy of the pages it touched). A
PostgreSQL database is backed up with PostgreSQL's own tools (pg_dump, or a
base backup with WAL archiving): docs/operations.md, "Backups and restore".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine

from .errors import Conflict, Invalid

# Pages copied per step: small steps let writers in between.
PAGES_PER_STEP = 1024


def backup_sqlite(engine: Engine, target: str | Path) -> int:
    """Copy the SQLite database of `engine` into the new file `target`, online;
    return the policy revision the copy is at.

    Raises Invalid (not a SQLite database: use pg_dump), Conflict (`target`
    exists: a backup never overwrites a file).
    """
    if engine.dialect.name != "sqlite":
        raise Invalid(
            "authz db backup copies a SQLite database; back PostgreSQL up with pg_dump "
            "(docs/operations.md, 'Backups and restore')."
        )
    target = Path(target)
    if target.exists():
        raise Conflict(f"{target} exists: a backup does not overwrite a file.", code="exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = engine.raw_connection()
    try:
        copy = sqlite3.connect(target)
        try:
            driver = source.driver_connection
            if not isinstance(driver, sqlite3.Connection):
                raise TypeError("a SQLite backup needs the sqlite3 driver's connection")
            driver.backup(copy, pages=PAGES_PER_STEP)
            revision = copy.execute("SELECT revision FROM policy_revision WHERE id = 1").fetchone()
        finally:
            copy.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return int(revision[0])
