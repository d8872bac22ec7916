"""Backups restore to a database that decides the same (issue 11, item 8):
SQLite's online backup (`authz db backup`), and pg_dump / pg_restore into a new
PostgreSQL database, as docs/operations.md tells an operator to do them.

"Decides the same": the effective-rights export (every right held now, from
the engine's decisions), the policy revision and the policy version in force
are equal on the original and on the restored copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, make_url, select

from authz.backup import backup_sqlite
from authz.config import ROOT, load_settings
from authz.errors import Invalid
from authz.review import exports
from authz.review.fixtures import load_world
from authz.review.policytest import read_assertions
from authz.runtime import Runtime, build_runtime, close_runtime
from cli import main
from models import PolicyRevision, Structure
from tests.support.backend import FAST_HASH, POSTGRES_URL
from tests.support.live import postgres_schema

# The world of the shipped decision matrix: every role, status and date case.
WORLD = read_assertions(ROOT / "policies" / "tests" / "decisions.yaml").world


def env_for(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "AUTHZ_DATABASE_URL": url,
        "AUTHZ_VAR_DIR": str(tmp_path / "var"),
        "AUTHZ_MAIL_BACKGROUND": "false",
        **{f"AUTHZ_{k.upper()}": str(v) for k, v in FAST_HASH.items()},
    }


def authz(env: dict[str, str], *args: str, code: int = 0):
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def populated(env: dict[str, str]) -> Runtime:
    """A migrated database (first policy version stored) with the world loaded."""
    authz(env, "db", "upgrade")
    rt = build_runtime(load_settings(environ=env))
    with rt.sessions() as session:
        load_world(session, WORLD)
        session.commit()
    return rt


def decisions_of(rt: Runtime) -> tuple[int, int | None, list[str]]:
    """(policy revision, policy version, every right held now)."""
    with rt.read_sessions() as s:
        revision, version = s.execute(
            select(PolicyRevision.revision, PolicyRevision.policy_version)
        ).one()
    rights = sorted(
        json.dumps(row, sort_keys=True, default=str)
        for row in exports.effective_rights(rt.read_sessions, rt)
    )
    return revision, version, rights


def test_an_online_sqlite_backup_restores_to_the_same_decisions(tmp_path):
    env = env_for(f"sqlite:///{tmp_path / 'authz.db'}", tmp_path)
    rt = populated(env)
    try:
        before = decisions_of(rt)
        assert before[1] == 1 and len(before[2]) > 20
        result = authz(env, "db", "backup", str(tmp_path / "copy.db"))
        assert f"at policy revision {before[0]}" in result.output
        # A later change reaches the original, not the copy taken before it.
        with rt.sessions() as session:
            session.scalars(select(Structure)).first().designation = "Renamed"
            session.commit()
    finally:
        close_runtime(rt)
    # Restore: the copy put in the database's place, then served from there.
    shutil.copy(tmp_path / "copy.db", tmp_path / "restored.db")
    restored = build_runtime(
        load_settings(environ=env_for(f"sqlite:///{tmp_path / 'restored.db'}", tmp_path))
    )
    try:
        assert decisions_of(restored) == before
        with restored.read_sessions() as s:
            assert "Renamed" not in s.scalars(select(Structure.designation)).all()
    finally:
        close_runtime(restored)


def test_a_backup_never_overwrites_a_file(tmp_path):
    env = env_for(f"sqlite:///{tmp_path / 'authz.db'}", tmp_path)
    authz(env, "db", "upgrade")
    (tmp_path / "taken").write_text("keep me")
    result = authz(env, "db", "backup", str(tmp_path / "taken"), code=1)
    assert "exists: a backup does not overwrite a file" in result.output
    assert (tmp_path / "taken").read_text() == "keep me"


def test_a_postgresql_database_is_backed_up_with_pg_dump_not_here():
    engine = create_engine("postgresql+psycopg://authz@db.invalid/authz")  # never connects
    with pytest.raises(Invalid, match="pg_dump"):
        backup_sqlite(engine, "/nonexistent/copy.db")


@pytest.mark.skipif(not POSTGRES_URL, reason="AUTHZ_TEST_POSTGRES_URL is not set")
@pytest.mark.skipif(not shutil.which("pg_dump"), reason="pg_dump is not installed")
def test_pg_dump_then_pg_restore_into_a_new_database_decides_the_same(tmp_path):
    with postgres_schema() as url:
        schema = make_url(url).query["options"].removeprefix("-csearch_path=")
        rt = populated(env_for(url, tmp_path))
        try:
            before = decisions_of(rt)
        finally:
            close_runtime(rt)
        server = make_url(POSTGRES_URL)
        libpq = server.set(drivername="postgresql")
        dump = tmp_path / "authz.dump"
        subprocess.run(
            ["pg_dump", "--format=custom", "--no-owner", f"--schema={schema}", "--file", dump,
             "--dbname", libpq.render_as_string(hide_password=False)],
            check=True, timeout=120,
        )  # fmt: skip
        target = f"{server.database}_restore_{uuid.uuid4().hex[:8]}"
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE \"{target}\" TEMPLATE template0 ENCODING 'UTF8'")
        try:
            new = libpq.set(database=target).render_as_string(hide_password=False)
            subprocess.run(
                ["pg_restore", "--no-owner", "--exit-on-error", "--dbname", new, dump],
                check=True, timeout=120,
            )  # fmt: skip
            restored_url = server.set(database=target).update_query_dict(
                {"options": f"-csearch_path={schema}"}
            )
            restored = build_runtime(
                load_settings(
                    environ=env_for(restored_url.render_as_string(hide_password=False), tmp_path)
                )
            )
            try:
                assert decisions_of(restored) == before
            finally:
                close_runtime(restored)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
            admin.dispose()
