"""Bounded waits (issue 10, point 4; docs/decisions.md "Bounded waits"): every
database session has statement and lock timeouts; a decision that cannot read
the policy revision in time fails closed with 503; readiness turns 503 when the
database does not answer within its own timeout; all recover by themselves."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from api import create_app
from authz.config import SettingError, load_settings
from authz.db import make_engine
from authz.runtime import close_runtime
from tests.support.api import Api
from tests.support.backend import BACKEND

LOCK_MS = 1000
READY_MS = 500


@pytest.fixture
def quick(settings_overrides):
    """The service with short timeouts, and a client of Ada, principal of ACME."""
    app = create_app(
        {**settings_overrides, "db_lock_timeout_ms": LOCK_MS, "ready_timeout_ms": READY_MS}
    )
    app.config["TESTING"] = True
    api = Api(app.test_client(), app.extensions["authz"])
    ada = api.person("ada@example.org")
    r = ada.post(
        "/v1/structures",
        json={"identifier_type": "SIRET", "identifier_value": "73282932000074", "designation": "A"},
    )
    assert r.status_code == 201, r.json
    yield app, ada, r.json["id"]
    close_runtime(app.extensions["authz"])


def _check(client, ada: Api, structure_id: int):
    started = time.monotonic()
    r = client.post(
        "/v1/checks",
        json={
            "user_id": ada.user["id"],
            "structure_id": structure_id,
            "space": "issued_invoices",
            "action": "consult",
        },
        headers={"Authorization": f"Bearer {ada.token}"},
    )
    return r.status_code, r.get_json(), time.monotonic() - started


@pytest.mark.skipif(BACKEND != "postgresql", reason="a table lock is PostgreSQL's")
def test_a_locked_policy_revision_fails_decisions_and_readiness_closed_then_recovers(
    quick, settings_overrides
):
    app, ada, sid = quick
    client = app.test_client()
    status, first, _took = _check(client, ada, sid)
    assert status == 200
    holder = make_engine(load_settings({"database_url": settings_overrides["database_url"]}))
    conn = holder.connect()
    try:
        conn.begin()
        conn.execute(text("SET LOCAL lock_timeout = 0"))
        conn.execute(text("LOCK TABLE policy_revision IN ACCESS EXCLUSIVE MODE"))
        # Four checks at once: all refused, none waits much longer than one timeout.
        results: list = [None] * 4

        def run(i: int) -> None:
            results[i] = _check(app.test_client(), ada, sid)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        for status, body, took in results:
            assert status == 503, body
            assert body["code"] == "policy_store_unavailable"
            assert took < 2 * LOCK_MS / 1000 + 1.5, took
        started = time.monotonic()
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json["code"] == "database_unavailable"
        assert time.monotonic() - started < READY_MS / 1000 + 1.5
    finally:
        conn.rollback()
        conn.close()
        holder.dispose()
    status, body, _took = _check(client, ada, sid)
    assert status == 200 and body["allowed"] == first["allowed"]
    assert client.get("/health/ready").status_code == 200


@pytest.mark.skipif(BACKEND != "postgresql", reason="statement_timeout is PostgreSQL's")
def test_every_postgresql_session_has_statement_and_lock_timeouts(rt):
    with rt.engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "5s"
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "2s"
        conn.execute(text("SET statement_timeout = 200"))
        with pytest.raises(Exception, match="statement timeout"):
            conn.execute(text("SELECT pg_sleep(2)"))


@pytest.mark.skipif(BACKEND != "sqlite", reason="the busy timeout is SQLite's")
def test_a_writer_waits_for_the_sqlite_write_lock_no_longer_than_the_lock_timeout(
    quick, settings_overrides
):
    _app, ada, _sid = quick
    holder = make_engine(load_settings({"database_url": settings_overrides["database_url"]}))
    conn = holder.connect()
    try:
        conn.begin()  # BEGIN IMMEDIATE: the database's write lock
        started = time.monotonic()
        r = ada.patch("/v1/me", json={"first_name": "Augusta"})
        took = time.monotonic() - started
        assert r.status_code == 503 and r.json["code"] == "database_unavailable"
        assert LOCK_MS / 1000 * 0.8 < took < LOCK_MS / 1000 + 2, took
    finally:
        conn.rollback()
        conn.close()
        holder.dispose()
    assert ada.patch("/v1/me", json={"first_name": "Augusta"}).status_code == 200


@pytest.mark.parametrize(
    "name, value",
    [
        ("AUTHZ_DB_STATEMENT_TIMEOUT_MS", "0"),
        ("AUTHZ_DB_LOCK_TIMEOUT_MS", "50"),
        ("AUTHZ_READY_TIMEOUT_MS", "-1"),
        ("AUTHZ_DB_CONNECT_TIMEOUT_SECONDS", "1"),
        ("AUTHZ_INVITATION_TTL_DAYS", "0"),
    ],
)
def test_timeouts_below_their_floor_are_refused(name, value):
    with pytest.raises(SettingError, match=name):
        load_settings(environ={name: value})
