"""The database a run uses: SQLite unless AUTHZ_TEST_POSTGRES_URL names a
PostgreSQL database (`make test` runs the suite once per backend)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from models import Base

POSTGRES_URL = os.environ.get("AUTHZ_TEST_POSTGRES_URL", "")
BACKEND = "postgresql" if POSTGRES_URL else "sqlite"

# Cheap argon2 parameters: the tests hash many passwords.
FAST_HASH = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


def fresh_database(migrated_template: str, directory: Path) -> str:
    """A migrated, empty database: a copy of the SQLite template in `directory`,
    or the PostgreSQL database emptied (every row deleted, every sequence back
    to 1, the policy revision back to 0). Its URL."""
    if not POSTGRES_URL:
        target = directory / "authz.db"
        shutil.copy(migrated_template, target)
        return f"sqlite:///{target}"
    with _emptier().begin() as conn:
        # A connection a previous test left in a transaction holding rows would
        # block the DELETE: fail fast and say so, rather than hang.
        conn.execute(text("SET LOCAL lock_timeout = '15s'"))
        conn.exec_driver_sql(_empty_every_table())
    return POSTGRES_URL


# DELETE, not TRUNCATE: the tables of a test hold a handful of rows, and a
# TRUNCATE of all 28 tables cost half a second per test (new files for every
# table and index, and their sync at commit): a quarter of the PostgreSQL pass.
# One statement list, one round trip; children before parents for the foreign keys.
_EMPTIER: list[Engine] = []


def _emptier() -> Engine:
    """One engine for the whole run (one connection kept), checked before use
    (a test may have restarted the server or ended its sessions)."""
    if not _EMPTIER:
        _EMPTIER.append(create_engine(POSTGRES_URL, pool_size=1, pool_pre_ping=True))
    return _EMPTIER[0]


def _empty_every_table() -> str:
    deletes = [f'DELETE FROM "{table.name}";' for table in reversed(Base.metadata.sorted_tables)]
    restarts = (
        "SELECT setval(quote_ident(schemaname) || '.' || quote_ident(sequencename), 1, false) "
        "FROM pg_sequences WHERE schemaname = current_schema();"
    )
    revision = (
        "INSERT INTO policy_revision (id, revision, updated_at) VALUES (1, 0, CURRENT_TIMESTAMP);"
    )
    return "\n".join([*deletes, restarts, revision])


# PostgreSQL: a shorter revision lease than the default 10 ms, taken and
# honoured by every process of a test alike (apps, CLIs, live servers: a
# reader's lease must not outlast a writer's wait), for a suite that commits
# tens of thousands of writes, each waiting it. tests/test_revision_lease.py
# runs a longer one.
TEST_LEASE_MS = 2


def app_settings(database_url: str, var_dir: Path) -> dict[str, Any]:
    """The settings of an app under test: that database, mail kept in the
    outbox (no background sender), cheap hashing."""
    return {
        "database_url": database_url,
        "var_dir": str(var_dir),
        "mail_background": False,
        "public_base_url": "http://authz.test",
        "revision_lease_ms": TEST_LEASE_MS,
        **FAST_HASH,
    }


def command_env(database_url: str, var_dir: Path) -> dict[str, str]:
    """The environment of a real `authz` (or gunicorn) process on `database_url`:
    this process's, less its AUTHZ_* and gunicorn variables, plus cheap hashing
    and no mail thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHZ_", "GUNICORN_"))}
    return {
        **env,
        "AUTHZ_DATABASE_URL": database_url,
        "AUTHZ_VAR_DIR": str(var_dir),
        "AUTHZ_MAIL_BACKGROUND": "false",
        "AUTHZ_REVISION_LEASE_MS": str(TEST_LEASE_MS),
        **{f"AUTHZ_{name.upper()}": str(value) for name, value in FAST_HASH.items()},
    }
