"""Fixtures shared by the suite.

The backend is SQLite unless AUTHZ_TEST_POSTGRES_URL names a PostgreSQL
database (`make test` runs the suite once per backend). The schema is made by
the Alembic migrations once per run; each test starts from empty tables.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, select, text

from api import create_app
from authz.config import load_settings
from authz.db import make_engine, upgrade
from authz.runtime import close_runtime
from models import Base, OutboxMail

POSTGRES_URL = os.environ.get("AUTHZ_TEST_POSTGRES_URL", "")
BACKEND = "postgresql" if POSTGRES_URL else "sqlite"
PASSWORD = "correct horse battery staple"

# Cheap argon2 parameters: the tests hash many passwords.
FAST_HASH = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


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
    if POSTGRES_URL:
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
    target = tmp_path / "authz.db"
    shutil.copy(migrated_template, target)
    return f"sqlite:///{target}"


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
    return {
        "database_url": database_url,
        "var_dir": str(tmp_path / "var"),
        "mail_background": False,
        "public_base_url": "http://authz.test",
        **FAST_HASH,
    }


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


def outbox(rt, to: str | None = None) -> list[OutboxMail]:
    with rt.sessions() as s:
        stmt = select(OutboxMail).order_by(OutboxMail.id)
        if to:
            stmt = stmt.where(OutboxMail.to_address == to)
        return list(s.scalars(stmt))


def activation_token(rt, email: str) -> str:
    mails = [m for m in outbox(rt, email.lower()) if m.kind == "activation"]
    assert mails, f"no activation mail for {email}"
    match = re.search(r"token=([A-Za-z0-9_\-]+)", mails[-1].body)
    assert match
    return match.group(1)


class Api:
    """A test client that speaks JSON and remembers a bearer token."""

    def __init__(self, client, rt, token: str | None = None, user: dict | None = None):
        self.client, self.rt, self.token, self.user = client, rt, token, user

    def _headers(self, headers):
        h = dict(headers or {})
        if self.token:
            h.setdefault("Authorization", f"Bearer {self.token}")
        return h

    def __getattr__(self, method):
        if method not in ("get", "post", "put", "patch", "delete"):
            raise AttributeError(method)

        def call(path, json=None, headers=None, **kw):
            return getattr(self.client, method)(
                path, json=json, headers=self._headers(headers), **kw
            )

        return call

    def signup(self, email: str, first="Ada", last="Lovelace", **extra):
        return self.client.post(
            "/v1/accounts",
            json={"login_email": email, "first_name": first, "last_name": last, **extra},
        )

    def person(self, email: str, first="Ada", last="Lovelace") -> "Api":
        """Sign up, activate through the mailed link, log in: a logged-in client."""
        created = self.signup(email, first, last)
        assert created.status_code == 201, created.json
        token = activation_token(self.rt, email)
        activated = self.client.post(
            "/v1/accounts/activation", json={"token": token, "password": PASSWORD}
        )
        assert activated.status_code == 200, activated.json
        login = self.client.post(
            "/v1/auth/token", json={"login_email": email, "password": PASSWORD}
        )
        assert login.status_code == 201, login.json
        return Api(self.client, self.rt, login.json["access_token"], created.json)


@pytest.fixture
def api(client, rt) -> Api:
    return Api(client, rt)


VALID_SIRETS = [
    "73282932000074",
    "35600000000048",
    "55208131766522",
    "44306184100047",
    "38012986643097",
]


@pytest.fixture
def structure_of(api):
    """Make `owner` the principal of a new private structure; returns its JSON."""
    counter = iter(VALID_SIRETS)

    def make(owner: Api, designation: str = "ACME SARL", **extra) -> dict:
        r = owner.post(
            "/v1/structures",
            json={
                "identifier_type": "SIRET",
                "identifier_value": next(counter),
                "designation": designation,
                **extra,
            },
        )
        assert r.status_code == 201, r.json
        return r.json

    return make
