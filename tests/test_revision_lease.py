"""The revision lease on PostgreSQL (docs/decisions.md, "Revision lease"): a
revision read serves the checks of the next AUTHZ_REVISION_LEASE_MS, and
every transaction of the service that wrote waits as long after its commit
before the service goes on, so a check still sees every write acknowledged
before it was asked. On SQLite the revision is read before every answer
(`PRAGMA data_version` costs microseconds): no lease, no wait."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text, update

from authz.config import load_settings
from authz.db import lease_of, make_engine
from authz.engine.checks import Caller, check
from authz.engine.decisions import Question
from authz.review.fixtures import load_world
from authz.runtime import Runtime, build_runtime, close_runtime, sync_catalogue
from authz.workflows.records import bump_revision
from models import PolicyRevision, User
from tests.support.backend import BACKEND, app_settings

LEASE_MS = 300
WORLD = {
    "structures": {"acme": {"kind": "private", "opened": ["issued_invoices"]}},
    "users": {"ann": {"status": "active"}},
    "attachments": [{"user": "ann", "structure": "acme", "role": "simple"}],
}
CLIENT = Caller(client_id=1)

postgresql_only = pytest.mark.skipif(BACKEND != "postgresql", reason="the lease is PostgreSQL's")


@pytest.fixture
def leased(database_url: str, tmp_path: Any) -> Iterator[tuple[Runtime, dict[str, int]]]:
    """A runtime with a lease long enough to observe (LEASE_MS), and a world."""
    settings = load_settings(
        {**app_settings(database_url, tmp_path / "var"), "revision_lease_ms": LEASE_MS}
    )
    rt = build_runtime(settings)
    try:
        sync_catalogue(rt)
        with rt.sessions.begin() as session:
            ids = load_world(session, WORLD)
        rt.decider.load()
        yield rt, {"ann": ids.users["ann"], "acme": ids.structures["acme"]}
    finally:
        close_runtime(rt)


def question(ids: dict[str, int]) -> Question:
    return Question(ids["ann"], ids["acme"], None, "structure.view")


@postgresql_only
def test_checks_within_the_lease_read_the_revision_once(leased):
    rt, ids = leased
    assert lease_of(rt.engine) == LEASE_MS / 1000
    check(rt, CLIENT, question(ids))
    polls = rt.decider.polls
    for _ in range(20):
        check(rt, CLIENT, question(ids))
    assert rt.decider.polls == polls, "answered from the leased read"
    time.sleep(LEASE_MS / 1000)
    check(rt, CLIENT, question(ids))
    assert rt.decider.polls == polls + 1, "the lease ran out: read again"


@postgresql_only
def test_a_write_acknowledged_before_a_check_is_seen_by_it(leased):
    """The write waits the lease after its commit, so no read older than the
    commit can still be leased when the writer goes on."""
    rt, ids = leased
    assert check(rt, CLIENT, question(ids)).allowed
    started = time.monotonic()
    with rt.sessions.begin() as session:
        session.execute(update(User).where(User.id == ids["ann"]).values(status="inactive"))
        revision = bump_revision(session, users=[ids["ann"]])
    assert time.monotonic() - started >= LEASE_MS / 1000, "the writer waited the lease"
    decision = check(rt, CLIENT, question(ids))
    assert not decision.allowed
    assert decision.revision == revision


@postgresql_only
def test_a_revision_asked_for_is_read_again_within_the_lease(leased, database_url):
    """A writer outside the service (no wait): its revision, when asked for,
    is read at once rather than refused for the rest of the lease."""
    rt, ids = leased
    check(rt, CLIENT, question(ids))
    outside = make_engine(load_settings({"database_url": database_url, "revision_lease_ms": 0}))
    try:
        with outside.begin() as conn:
            revision = bump_revision_outside(conn)
    finally:
        outside.dispose()
    stale = check(rt, CLIENT, question(ids))
    assert stale.revision < revision, "within the lease, the read is not repeated"
    asked = check(rt, CLIENT, question(ids), at_least_revision=revision)
    assert asked.revision == revision


def bump_revision_outside(conn: Any) -> int:
    conn.execute(update(PolicyRevision).values(revision=PolicyRevision.revision + 1))
    return int(conn.execute(text("SELECT revision FROM policy_revision")).scalar_one())


@postgresql_only
def test_reads_and_rollbacks_do_not_wait(leased):
    rt, ids = leased
    started = time.monotonic()
    with rt.sessions() as session:
        session.get(User, ids["ann"])
        session.commit()
    with rt.sessions() as session:
        session.execute(update(User).where(User.id == ids["ann"]).values(status="inactive"))
        session.rollback()
    with rt.sessions() as session:  # closed without a commit: rolled back
        session.execute(update(User).where(User.id == ids["ann"]).values(status="inactive"))
    for _ in range(3):  # the pool's connections, written on and given back: nothing carried
        with rt.sessions() as session:
            session.get(User, ids["ann"])
            session.commit()
    assert time.monotonic() - started < LEASE_MS / 1000


def test_without_a_lease_every_check_reads_the_revision(database_url, tmp_path):
    settings = load_settings(
        {**app_settings(database_url, tmp_path / "var"), "revision_lease_ms": 0}
    )
    rt = build_runtime(settings)
    try:
        assert lease_of(rt.engine) == 0 and lease_of(rt.decider.db_engine) == 0
        rt.decider.load()
        polls = rt.decider.polls
        for _ in range(5):
            check(rt, CLIENT, Question(1, 1, None, "structure.view"))
        assert rt.decider.polls == polls + 5
    finally:
        close_runtime(rt)


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's default")
def test_sqlite_takes_no_lease_whatever_the_setting(database_url, tmp_path):
    rt = build_runtime(load_settings(app_settings(database_url, tmp_path / "var")))
    try:
        assert rt.settings.revision_lease_ms > 0
        assert lease_of(rt.engine) == 0 and lease_of(rt.decider.db_engine) == 0
    finally:
        close_runtime(rt)
