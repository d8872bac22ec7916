"""Fixtures shared by the suite.

The backend is SQLite unless AUTHZ_TEST_POSTGRES_URL names a PostgreSQL
database (`make test` runs the suite once per backend). The schema is made by
the Alembic migrations once per run; each test starts from empty tables.

Test modules import helpers from `tests/support/`, never from this file nor
from each other (tests/test_layers.py checks it); a package of tests with a
world of its own adds a conftest.py of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from api import create_app
from authz.config import load_settings
from authz.db import make_engine, upgrade
from authz.runtime import Runtime, build_runtime, close_runtime
from tests.support.api import VALID_SIRETS, Api, create_structure
from tests.support.backend import BACKEND, POSTGRES_URL, app_settings, fresh_database

# The suite runs where the local date is not UTC's (UTC+14 from 10:00 UTC, UTC-12
# before). The service's day is UTC's (authz/roles.py: today): a test or a code path
# that took the local date instead would pass on a UTC machine and fail elsewhere;
# here it fails everywhere. The processes the tests start inherit the zone.
os.environ["TZ"] = "Etc/GMT-14" if dt.datetime.now(dt.UTC).hour >= 10 else "Etc/GMT+12"
time.tzset()


def pytest_report_header(config):
    return f"authz database backend: {BACKEND}"


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory) -> str:
    """A database at the latest migration: a SQLite file to copy, or the PG URL."""
    if POSTGRES_URL:
        engine = make_engine(load_settings({"database_url": POSTGRES_URL}))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        upgrade(engine)
        engine.dispose()
        return POSTGRES_URL
    path = tmp_path_factory.mktemp("template") / "authz.db"
    engine = make_engine(load_settings({"database_url": f"sqlite:///{path}"}))
    upgrade(engine)
    engine.dispose()
    return str(path)


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> str:
    """A fresh, migrated, empty database for one test."""
    return fresh_database(migrated_template, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file, or a fresh PostgreSQL schema of
    its own (skipped when AUTHZ_TEST_POSTGRES_URL is unset), whatever backend
    the rest of the run uses."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authz.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("AUTHZ_TEST_POSTGRES_URL is not set")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def settings_overrides(database_url: str, tmp_path: Path) -> dict[str, Any]:
    return app_settings(database_url, tmp_path / "var")


@pytest.fixture
def app(settings_overrides):
    app = create_app(settings_overrides)
    app.config["TESTING"] = True
    yield app
    close_runtime(app.extensions["authz"])


@pytest.fixture
def rt(app):
    return app.extensions["authz"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def session(rt) -> Iterator:
    with rt.sessions() as s:
        yield s


@pytest.fixture
def api(client, rt) -> Api:
    return Api(client, rt)


@pytest.fixture
def structure_of(api):
    """Make `owner` the principal of a new private structure; returns its JSON.
    The test's structures take VALID_SIRETS in order."""
    counter = iter(VALID_SIRETS)

    def make(owner: Api, designation: str = "ACME SARL", **extra) -> dict:
        return create_structure(owner, next(counter), designation, **extra)

    return make


# --- the command line ----------------------------------------------------------


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The AUTHZ_* environment of the commands: the test's database, cheap hashing."""
    return {
        "AUTHZ_DATABASE_URL": database_url,
        "AUTHZ_VAR_DIR": str(tmp_path / "var"),
        "AUTHZ_PUBLIC_BASE_URL": "http://authz.test",
        "AUTHZ_ARGON2_TIME_COST": "1",
        "AUTHZ_ARGON2_MEMORY_KIB": "1024",
        "AUTHZ_ARGON2_PARALLELISM": "1",
        "AUTHZ_MAIL_BACKGROUND": "false",
    }


@pytest.fixture
def cli_rt(cli_env: dict[str, str]) -> Iterator[Runtime]:
    """A Runtime on the same settings as the commands, to check what they did."""
    rt = build_runtime(load_settings(environ=cli_env))
    yield rt
    rt.engine.dispose()
