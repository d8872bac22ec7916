"""The identity cache (issue 13, item 1): a known API key or bearer token is
resolved without reading its rows while nothing that could invalidate it
changed, and refused by the very next request, on every worker of every
instance, once it is revoked, logged out, or its account deactivated.

The cache is valid for one value of policy_revision.identity_revision, which
database triggers bump in the transaction of every such change (migration
0011), and which each request reads in the revision poll its decisions reuse.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import delete, event, select, update

from authz.config import load_settings
from authz.engine.decisions import answering_since, done_answering
from authz.identities import Identity, IdentityCache
from authz.review.fixtures import load_world
from authz.runtime import Runtime, build_runtime, close_runtime
from authz.workflows import accounts
from authz.workflows.clients import create_client, revoke_client
from authz.workflows.records import bump_revision
from models import AuthToken, ClientApplication, PolicyRevision, User, utcnow
from tests.support.live import Server, authz_command, postgres_schema, serve_env, serving

WORLD = {
    "structures": {"acme": {"kind": "private", "opened": ["issued_invoices"]}},
    "users": {
        "alice": {"status": "active", "login_email": "alice@example.org"},
        "bob": {"status": "active", "login_email": "bob@example.org"},
    },
    "attachments": [
        {"user": "alice", "structure": "acme", "role": "principal", "valid_from": -30},
        {"user": "bob", "structure": "acme", "role": "secondary", "valid_from": -30},
    ],
}
PASSWORD = "Identity-cache-test-1"


# --- the cache alone -------------------------------------------------------------

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=1)


def test_a_cached_identity_is_found_at_the_revision_it_was_resolved_at():
    cache = IdentityCache()
    cache.put(b"k", 3, Identity(client_id=7))
    assert cache.get(b"k", 3, NOW) == Identity(client_id=7)
    assert cache.get(b"other", 3, NOW) is None


def test_another_identity_revision_forgets_every_entry():
    cache = IdentityCache()
    cache.put(b"a", 3, Identity(client_id=1))
    cache.put(b"b", 3, Identity(user_id=2, token_id=9, expires_at=LATER))
    assert cache.get(b"a", 4, NOW) is None
    assert len(cache) == 0
    assert cache.get(b"b", 4, NOW) is None
    # ...and the old revision does not bring them back (a restore going back).
    assert cache.get(b"b", 3, NOW) is None


def test_an_entry_resolved_at_an_older_revision_does_not_survive_the_newer_one():
    cache = IdentityCache()
    cache.get(b"a", 5, NOW)  # a request read revision 5
    cache.put(b"a", 4, Identity(client_id=1))  # a slower one resolved at 4
    assert cache.get(b"a", 5, NOW) is None


def test_an_expired_token_is_not_answered_from_the_cache():
    cache = IdentityCache()
    cache.put(b"t", 1, Identity(user_id=2, token_id=9, expires_at=LATER))
    assert cache.get(b"t", 1, NOW) is not None
    assert cache.get(b"t", 1, LATER) is None
    assert cache.get(b"t", 1, LATER + dt.timedelta(seconds=1)) is None


def test_the_least_recently_used_entry_goes_first_when_full():
    cache = IdentityCache(size=2)
    cache.put(b"a", 1, Identity(client_id=1))
    cache.put(b"b", 1, Identity(client_id=2))
    assert cache.get(b"a", 1, NOW) is not None  # a is now the most recent
    cache.put(b"c", 1, Identity(client_id=3))
    assert cache.get(b"b", 1, NOW) is None
    assert cache.get(b"a", 1, NOW) is not None
    assert cache.get(b"c", 1, NOW) is not None


# --- the triggers ----------------------------------------------------------------


def identity_revision(rt: Runtime) -> int:
    with rt.read_sessions() as s:
        return s.scalars(select(PolicyRevision.identity_revision)).one()


@pytest.fixture
def world(rt):
    with rt.sessions() as session:
        ids = load_world(session, WORLD)
        for name in ("alice", "bob"):
            session.get(User, ids.users[name]).password_hash = rt.hasher.hash(PASSWORD)
        session.commit()
    return ids


def log_in(rt: Runtime, email: str) -> str:
    with rt.sessions() as session:
        token, _ = accounts.log_in(
            session, rt, login_email=email, password=PASSWORD, address="127.0.0.1"
        )
    return token


def test_what_can_invalidate_a_credential_bumps_the_identity_revision(rt, world):
    alice = world.users["alice"]
    before = identity_revision(rt)
    token = log_in(rt, "alice@example.org")
    with rt.sessions() as session:
        _, _key = create_client(session, rt, "portal")
        session.get(User, alice).first_name = "Alicia"  # no credential changes
        session.commit()
    assert identity_revision(rt) == before, "a new token, client or a profile change"
    changes = [
        update(AuthToken).values(revoked_at=utcnow()),
        update(AuthToken).values(expires_at=utcnow()),
        delete(AuthToken),
        update(User).where(User.id == alice).values(status="inactive"),
        update(ClientApplication).values(active=False),
        update(ClientApplication).values(key_hash="replaced"),
        delete(ClientApplication),
    ]
    for change in changes:
        seen = identity_revision(rt)
        with rt.sessions() as session:
            session.execute(change)
            session.commit()
        assert identity_revision(rt) > seen, str(change)
    assert token
    unchanged = identity_revision(rt)
    with rt.sessions() as session:  # written again as it was: nothing to forget
        session.execute(update(User).where(User.id == alice).values(status="inactive"))
        session.commit()
    assert identity_revision(rt) == unchanged


# --- in process: the rows are read once --------------------------------------------


@pytest.fixture
def statements(rt) -> Iterator[list[str]]:
    """The SQL statements run on the engine the requests read identities with."""
    seen: list[str] = []
    engine = rt.decider.db_engine

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def check_body(user_id: int, structure_id: int) -> dict:
    return {
        "user_id": user_id,
        "structure_id": structure_id,
        "space": "issued_invoices",
        "action": "consult",
    }


def test_a_known_key_is_resolved_without_reading_its_row_until_it_is_revoked(
    client, rt, world, statements
):
    with rt.sessions() as session:
        _, key = create_client(session, rt, "portal")
    body = check_body(world.users["alice"], world.structures["acme"])
    auth = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/checks", json=body, headers=auth).status_code == 200
    statements.clear()
    for _ in range(3):
        assert client.post("/v1/checks", json=body, headers=auth).status_code == 200
    assert not [s for s in statements if "client_applications" in s], statements
    with rt.sessions() as session:
        revoke_client(session, rt, "portal")
    refused = client.post("/v1/checks", json=body, headers=auth)
    assert refused.status_code == 401
    assert refused.json["code"] == "invalid_token"


def test_a_check_with_a_known_token_reads_the_revision_once_and_no_identity_row(
    client, rt, world, statements
):
    token = log_in(rt, "alice@example.org")
    body = check_body(world.users["alice"], world.structures["acme"])
    auth = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/checks", json=body, headers=auth).status_code == 200
    statements.clear()
    assert client.post("/v1/checks", json=body, headers=auth).status_code == 200
    assert not [s for s in statements if "auth_tokens" in s or "users" in s], statements
    polls = [s for s in statements if "policy_revision" in s]
    assert len(polls) <= 1, statements  # shared by authentication and the decision


def test_a_logged_out_token_and_a_deactivated_account_are_refused_by_the_next_request(
    client, rt, world
):
    body = check_body(world.users["alice"], world.structures["acme"])
    token = log_in(rt, "alice@example.org")
    auth = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/checks", json=body, headers=auth).status_code == 200
    assert client.delete("/v1/auth/token", headers=auth).status_code == 204
    assert client.post("/v1/checks", json=body, headers=auth).status_code == 401

    bob = world.users["bob"]
    token = log_in(rt, "bob@example.org")
    auth = {"Authorization": f"Bearer {token}"}
    body = check_body(bob, world.structures["acme"])
    assert client.post("/v1/checks", json=body, headers=auth).status_code == 200
    with rt.sessions() as session:
        session.execute(update(User).where(User.id == bob).values(status="inactive"))
        bump_revision(session, users=[bob])
        session.commit()
    assert client.post("/v1/checks", json=body, headers=auth).status_code == 401


def test_an_expired_token_is_refused_although_cached(client, rt, world):
    body = check_body(world.users["alice"], world.structures["acme"])
    token = log_in(rt, "alice@example.org")
    auth = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/checks", json=body, headers=auth).status_code == 200
    assert len(rt.identities) == 1
    # Nothing changed in the database: only the cached expiry can refuse it.
    later = utcnow() + dt.timedelta(seconds=rt.settings.token_ttl_seconds + 1)
    with time_machine.travel(later, tick=False):
        assert client.post("/v1/checks", json=body, headers=auth).status_code == 401


# --- two workers, both backends -----------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def live_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authz.db'}"
        return
    with postgres_schema() as url:
        yield url


SPREAD_TIMEOUT = 90.0  # seconds for both workers to have answered


def on_every_worker(server: Server, path: str, body: dict, key: str) -> list[int]:
    """The statuses of calls made four at a time until each worker of `server`
    answered at least one of them."""
    mark = len(server.served())
    statuses: list[int] = []
    answered: set[int] = set()
    # Until a deadline rather than a number of rounds: on a loaded machine one
    # worker can take 160 connections in a row while the other is descheduled.
    deadline = time.monotonic() + SPREAD_TIMEOUT
    with ThreadPoolExecutor(max_workers=8) as pool:
        while time.monotonic() < deadline:
            statuses += pool.map(lambda _: server.call("POST", path, body, key)[0], range(8))
            # This path only: an earlier request may be logged after `mark`.
            answered = {pid for pid, _s, _m, logged in server.served()[mark:] if logged == path}
            if answered >= server.workers():
                return statuses
    pytest.fail(f"not every worker answered: {answered} of {server.workers()}")


def test_revocation_reaches_every_worker_at_once(live_url, tmp_path: Path):
    env = serve_env(live_url, tmp_path / "var", threads="1")
    subprocess.run([authz_command(), "db", "upgrade"], env=env, check=True, timeout=120)
    rt = build_runtime(load_settings(environ=env))
    try:
        with rt.sessions() as session:
            ids = load_world(session, WORLD)
            for name in ("alice", "bob"):
                user = session.get(User, ids.users[name])
                assert user is not None
                user.password_hash = rt.hasher.hash(PASSWORD)
            session.commit()
            _, key = create_client(session, rt, "portal")
        alice, bob, acme = ids.users["alice"], ids.users["bob"], ids.structures["acme"]
        alice_token = log_in(rt, "alice@example.org")
        bob_token = log_in(rt, "bob@example.org")
        with serving(env, tmp_path / "serve.log", workers=2, every_worker=True) as server:
            callers = [
                (check_body(alice, acme), key),
                (check_body(alice, acme), alice_token),
                (check_body(bob, acme), bob_token),
            ]
            # Every credential is known (cached) by every worker...
            for body, credential in callers:
                assert set(on_every_worker(server, "/v1/checks", body, credential)) == {200}

            # ...a revoked key is refused by the next request on every worker,
            with rt.sessions() as session:
                revoke_client(session, rt, "portal")
            assert set(on_every_worker(server, "/v1/checks", *callers[0])) == {401}
            # a logged-out token too (logged out through the service itself),
            assert server.call("DELETE", "/v1/auth/token", key=alice_token)[0] == 204
            assert set(on_every_worker(server, "/v1/checks", *callers[1])) == {401}
            # and a token whose account was deactivated;
            with rt.sessions() as session:
                session.execute(update(User).where(User.id == bob).values(status="inactive"))
                bump_revision(session, users=[bob])
                session.commit()
            assert set(on_every_worker(server, "/v1/checks", *callers[2])) == {401}
            # what was not touched still works.
            with rt.sessions() as session:
                _, other = create_client(session, rt, "partner")
            assert set(on_every_worker(server, "/v1/checks", check_body(alice, acme), other)) == {
                200
            }
    finally:
        close_runtime(rt)


def test_a_request_reuses_only_a_revision_read_that_started_after_it_arrived(rt, world, statements):
    decider = rt.decider
    seen = decider.ensure_fresh()
    with rt.sessions() as session:  # committed after that read, before the request
        bump_revision(session, users=[world.users["alice"]])
        session.commit()
    token = answering_since(time.monotonic())
    try:
        statements.clear()
        assert decider.ensure_fresh() == seen + 1  # read again: the old read is too old
        polls = len([s for s in statements if "policy_revision" in s or "data_version" in s])
        assert polls >= 1
        statements.clear()
        assert decider.ensure_fresh() == seen + 1  # the same request: that read serves
        assert decider.identity_revision() >= 0
        assert not [s for s in statements if "policy_revision" in s or "data_version" in s]
    finally:
        done_answering(token)
