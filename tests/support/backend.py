"""The database a run uses: SQLite unless AUTHZ_TEST_POSTGRES_URL names a
PostgreSQL database (`make test` runs the suite once per backend)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import text

from authz.config import load_settings
from authz.db import make_engine
from models import Base

POSTGRES_URL = os.environ.get("AUTHZ_TEST_POSTGRES_URL", "")
BACKEND = "postgresql" if POSTGRES_URL else "sqlite"

# Cheap argon2 parameters: the tests hash many passwords.
FAST_HASH = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


def fresh_database(migrated_template: str, directory: Path) -> str:
    """A migrated, empty database: a copy of the SQLite template in `directory`,
    or the PostgreSQL database emptied (every table truncated, the policy
    revision back to 0). Its URL."""
    if not POSTGRES_URL:
        target = directory / "authz.db"
        shutil.copy(migrated_template, target)
        return f"sqlite:///{target}"
    engine = make_engine(load_settings({"database_url": POSTGRES_URL}))
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        # A connection a previous test left in a transaction would block the
        # TRUNCATE: fail fast and say so, rather than hang.
        conn.execute(text("SET LOCAL lock_timeout = '15s'"))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(
            text(
                "INSERT INTO policy_revision (id, revision, updated_at) "
                "VALUES (1, 0, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    return POSTGRES_URL


def app_settings(database_url: str, var_dir: Path) -> dict[str, Any]:
    """The settings of an app under test: that database, mail kept in the
    outbox (no background sender), cheap hashing."""
    return {
        "database_url": database_url,
        "var_dir": str(var_dir),
        "mail_background": False,
        "public_base_url": "http://authz.test",
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
        **{f"AUTHZ_{name.upper()}": str(value) for name, value in FAST_HASH.items()},
    }
