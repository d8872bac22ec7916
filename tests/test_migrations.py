"""Schema changes in production: several `authz db upgrade` at once, and rolling
deploys (an instance keeps serving on a newer schema that declares itself
compatible with it, and only then). docs/operations.md states the rules.

Each test runs on an empty SQLite file, and on an empty PostgreSQL schema of its
own when AUTHZ_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import Engine, func, inspect, select, text

from api import StartupError, create_app
from authz.config import load_settings, shipped
from authz.db import (
    SCHEMA_LOCK_KEY,
    alembic_config,
    code_chain,
    make_engine,
    schema_status,
    upgrade,
)
from authz.runtime import close_runtime
from cli import main
from models import SchemaCompatibility, Space
from tests.support.backend import FAST_HASH, command_env

AUTHZ = str(Path(sys.executable).parent / "authz")
HEAD = code_chain().head


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    engine = make_engine(load_settings({"database_url": empty_database_url}))
    yield engine
    engine.dispose()


def cli_env(url: str, tmp_path: Path) -> dict[str, str]:
    return command_env(url, tmp_path / "var")


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
    assert schema_status(engine).state == "current"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Space)).scalar() > 0


def test_upgrade_takes_the_lock_on_the_connection_it_migrates_with(engine):
    """No lock is left behind: a second upgrade in the same process goes through."""
    assert upgrade(engine) == (None, HEAD)
    assert upgrade(engine) == (HEAD, HEAD)


# --- rolling deploys: a newer schema, compatible or not ------------------------------


def next_release(tmp_path: Path, *, compatible_with: str | None, name: str = "next") -> Path:
    """A copy of the shipped migrations plus the migration of a next release that
    adds a nullable column (the expand step), declaring `compatible_with`."""
    folder = tmp_path / f"migrations-{name}"
    shutil.copytree(shipped("migrations"), folder, ignore=shutil.ignore_patterns("__pycache__"))
    declaration = f"compatible_with = {compatible_with!r}\n" if compatible_with else ""
    (folder / "versions" / f"9001_{name}.py").write_text(
        f'"""{name}: users get a nickname"""\n'
        "from alembic import op\n"
        "import sqlalchemy as sa\n\n"
        f"revision = '9001{name}'\n"
        f"down_revision = {HEAD!r}\n"
        "branch_labels = None\n"
        "depends_on = None\n"
        f"{declaration}\n\n"
        "def upgrade():\n"
        "    op.add_column('users', sa.Column('nickname', sa.String(40), nullable=True))\n\n\n"
        "def downgrade():\n"
        "    op.drop_column('users', 'nickname')\n",
        encoding="utf-8",
    )
    return folder


@pytest.fixture
def running(empty_database_url, engine, tmp_path):
    """An instance of this release serving on its own, current, schema."""
    upgrade(engine)
    app = create_app(
        {
            "database_url": empty_database_url,
            "var_dir": str(tmp_path / "var"),
            "mail_background": False,
            "public_base_url": "http://authz.test",
            **FAST_HASH,
        }
    )
    yield app.test_client()
    close_runtime(app.extensions["authz"])


def test_an_instance_stays_ready_when_the_next_release_adds_a_compatible_migration(
    running, engine, empty_database_url, tmp_path
):
    assert running.get("/health/ready").status_code == 200
    upgrade(engine, script_location=next_release(tmp_path, compatible_with=HEAD))
    assert versions(engine) == ["9001next"]
    status = schema_status(engine)
    assert (status.state, status.usable) == ("compatible", True)
    assert running.get("/health/ready").status_code == 200
    # It still serves, reads and writes on the newer schema...
    signup = running.post(
        "/v1/accounts",
        json={"login_email": "ada@example.org", "first_name": "Ada", "last_name": "Lovelace"},
    )
    assert signup.status_code == 201, signup.json
    # ...its command line passes the schema check...
    env = cli_env(empty_database_url, tmp_path)
    assert CliRunner().invoke(main, ["demo"], env=env).exit_code == 0
    upgraded = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    assert "newer than this release's" in upgraded.output and "nothing to do" in upgraded.output
    assert versions(engine) == ["9001next"]
    # ...and a new instance of it starts.
    app = create_app(
        {"database_url": empty_database_url, "var_dir": str(tmp_path / "var2"), **FAST_HASH}
    )
    close_runtime(app.extensions["authz"])


@pytest.mark.parametrize("declared", [None, "9001next"], ids=["undeclared", "itself"])
def test_an_instance_turns_unready_when_the_next_release_is_incompatible(
    running, engine, empty_database_url, tmp_path, declared
):
    upgrade(engine, script_location=next_release(tmp_path, compatible_with=declared))
    status = schema_status(engine)
    assert (status.state, status.code) == ("incompatible", "schema_incompatible")
    ready = running.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json["code"] == "schema_incompatible"
    assert "9001next" in ready.json["detail"]
    env = cli_env(empty_database_url, tmp_path)
    for args in (["demo"], ["db", "upgrade"], ["serve"]):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 1
        assert result.output.startswith("error: The database schema is at revision 9001next")
        assert result.output.count("\n") == 1
    with pytest.raises(StartupError, match="not compatible"):
        create_app({"database_url": empty_database_url, "var_dir": str(tmp_path / "var2")})
    assert versions(engine) == ["9001next"]


def test_an_instance_turns_unready_on_an_older_schema(running, engine):
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    ready = running.get("/health/ready")
    assert (ready.status_code, ready.json["code"]) == (503, "schema_outdated")
    assert schema_status(engine).state == "outdated"


def test_a_compatibility_row_left_by_another_revision_is_not_trusted(running, engine, tmp_path):
    upgrade(engine, script_location=next_release(tmp_path, compatible_with=HEAD))
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_compatibility SET revision = 'something-else'"))
    assert schema_status(engine).state == "incompatible"
    assert running.get("/health/ready").json["code"] == "schema_incompatible"


def test_the_migrations_record_the_declaration_of_the_head_they_reach(engine, tmp_path):
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(
            select(SchemaCompatibility.revision, SchemaCompatibility.compatible_with)
        ).one()
    script = ScriptDirectory.from_config(alembic_config(None))
    assert tuple(row) == (HEAD, script.get_revision(HEAD).module.compatible_with)
    upgrade(engine, script_location=next_release(tmp_path, compatible_with=HEAD))
    with engine.connect() as conn:
        assert tuple(
            conn.execute(
                select(SchemaCompatibility.revision, SchemaCompatibility.compatible_with)
            ).one()
        ) == ("9001next", HEAD)
        assert "nickname" in {c["name"] for c in inspect(conn).get_columns("users")}


def test_every_migration_from_0005_on_declares_an_older_or_equal_compatible_revision():
    script = ScriptDirectory.from_config(alembic_config(None))
    revisions = list(reversed(list(script.walk_revisions())))
    seen: set[str] = set()
    for rev in revisions:
        seen.add(rev.revision)
        if rev.revision < "0005":
            continue
        declared = getattr(rev.module, "compatible_with", None)
        assert isinstance(declared, str), f"{rev.path} declares no compatible_with"
        assert declared in seen, f"{rev.path}: compatible_with {declared!r} is not older or equal"


def test_the_migration_template_declares_the_strict_default():
    template = (shipped("migrations") / "script.py.mako").read_text(encoding="utf-8")
    assert "compatible_with = ${repr(up_revision)}" in template
