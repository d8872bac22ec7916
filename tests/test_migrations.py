"""Schema changes in production: several `authz db upgrade` at once.

Each test runs on an empty SQLite file, and on an empty PostgreSQL schema of its
own when AUTHZ_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, select, text

from authz.config import load_settings
from authz.db import (
    SCHEMA_LOCK_KEY,
    alembic_config,
    make_engine,
    schema_is_current,
    upgrade,
)
from models import Space


AUTHZ = str(Path(sys.executable).parent / "authz")
HEAD = ScriptDirectory.from_config(alembic_config(None)).get_current_head()


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    engine = make_engine(load_settings({"database_url": empty_database_url}))
    yield engine
    engine.dispose()


def cli_env(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AUTHZ_DATABASE_URL": url,
        "AUTHZ_VAR_DIR": str(tmp_path / "var"),
        "AUTHZ_MAIL_BACKGROUND": "false",
        "AUTHZ_ARGON2_TIME_COST": "1",
        "AUTHZ_ARGON2_MEMORY_KIB": "1024",
        "AUTHZ_ARGON2_PARALLELISM": "1",
    }


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


# --- several upgrades at once ----------------------------------------------------


def _wait_until(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _have_opened(pids: list[int], path: str) -> bool:
    """Every process has the SQLite file open (it is about to ask for the lock)."""

    def opened(pid: int) -> bool:
        fds = Path(f"/proc/{pid}/fd")
        try:
            return any(os.path.realpath(fd) == path for fd in fds.iterdir())
        except OSError:
            return False

    return all(opened(pid) for pid in pids)


def test_three_upgrades_at_once_one_migrates_the_others_wait_then_all_succeed(
    empty_database_url, engine, tmp_path
):
    env = cli_env(empty_database_url, tmp_path)
    holder = engine.connect()
    try:
        # Hold the schema lock so that the three really queue up together.
        holder.begin()  # SQLite: BEGIN IMMEDIATE, the database's write lock
        if engine.dialect.name == "postgresql":
            holder.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
        procs = [
            subprocess.Popen(
                [AUTHZ, "db", "upgrade"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        if engine.dialect.name == "postgresql":

            def queued() -> bool:
                with engine.connect() as conn:
                    return (
                        conn.execute(
                            text(
                                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                "AND NOT granted"
                            )
                        ).scalar()
                        >= 3
                    )

            _wait_until(queued)
        else:
            path = os.path.realpath(engine.url.database)
            _wait_until(lambda: _have_opened([p.pid for p in procs], path))
            time.sleep(1.0)
        assert all(p.poll() is None for p in procs), "an upgrade did not wait for the lock"
    finally:
        holder.rollback()
        holder.close()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    stdout = [out for out, _ in outputs]
    assert sum(f"upgraded from an empty schema to revision {HEAD}." in o for o in stdout) == 1
    assert sum(f"already at revision {HEAD}." in o for o in stdout) == 2
    if engine.dialect.name == "postgresql":
        assert all("waiting for it" in err for _, err in outputs), outputs
    assert versions(engine) == [HEAD]
    assert schema_is_current(engine)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Space)).scalar() > 0


def test_upgrade_takes_the_lock_on_the_connection_it_migrates_with(engine):
    """No lock is left behind: a second upgrade in the same process goes through."""
    assert upgrade(engine) == (None, HEAD)
    assert upgrade(engine) == (HEAD, HEAD)
