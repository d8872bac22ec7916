"""Freshness across processes: `authz serve` with two gunicorn workers, each with
its own decision index, on the test's database. A decision asked with
`at_least_revision` = the revision a change was committed at reflects that
change, whichever worker answers, and a revision not committed yet is a 503.

Grants and revokes are written through the API (opening / closing a space,
deactivating / reactivating a service) and through the models with
`bump_revision` from this test's process, as another writer would.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from authz.runtime import Runtime
from authz.workflows.clients import create_client
from authz.workflows.records import bump_revision
from tests.support.api import VALID_SIRETS, Api
from tests.support.live import Server, serve_env, serving
from tests.support.rows import attachment_row, revision, subscription_row, user_row

CHECKS_PER_PHASE = 24  # enough, sent 4 at a time, for both workers to answer
QUESTION = {"service": "sales", "space": "works_invoices", "action": "create"}


@pytest.fixture
def server(database_url: str, rt: Runtime, tmp_path: Path) -> Iterator[Server]:
    """`authz serve --workers 2` on the test's (migrated) database."""
    with serving(serve_env(database_url, tmp_path / "served"), tmp_path / "server.log") as served:
        yield served


def decisions(server: Server, key: str, body: dict[str, Any]) -> list[tuple[int, Any]]:
    """CHECKS_PER_PHASE answers to the same check, four requests at a time."""

    def ask(_: int) -> tuple[int, Any]:
        status, answer = server.call("POST", "/v1/checks", body, key)
        return status, answer

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(ask, range(CHECKS_PER_PHASE)))


def assert_always(
    server: Server, key: str, question: dict[str, Any], at: int, allowed: bool
) -> None:
    """Every answer at revision >= `at` is `allowed`."""
    answers = decisions(server, key, {**question, "at_least_revision": at})
    assert all(status == 200 for status, _ in answers), answers
    assert {a["allowed"] for _, a in answers} == {allowed}, answers
    assert min(a["revision"] for _, a in answers) >= at


def test_every_worker_answers_at_the_revision_of_the_last_grant_or_revoke(
    server: Server, rt: Runtime, api: Api
) -> None:
    alice = api.person("alice@example.org")
    sid = server.ok(
        "POST",
        "/v1/structures",
        {"identifier_type": "SIRET", "identifier_value": VALID_SIRETS[0], "designation": "ACME"},
        alice.token,
        status=201,
    )["id"]
    sales = server.ok(
        "POST",
        f"/v1/structures/{sid}/services",
        {"code": "sales", "label": "Sales"},
        alice.token,
        status=201,
    )["id"]
    with rt.sessions() as session:
        _, key = create_client(session, rt, "freshness")
        bob = user_row("bob@example.org", "Bob", "Martin")
        session.add(bob)
        session.flush()
        session.add(attachment_row(bob.id, sid))
        bump_revision(session, users=[bob.id], memberships=[(bob.id, sid)])
        session.commit()
    question = {"user_id": bob.id, "structure_id": sid, **QUESTION}
    spaces_path = f"/v1/structures/{sid}/spaces"
    opened = server.ok("GET", spaces_path, key=alice.token)["spaces"]
    works_on_sales = {"space": "works_invoices", "service_id": sales}

    # A space opened through the API, but no subscription yet: denied.
    server.ok("PUT", spaces_path, {"spaces": [*opened, works_on_sales]}, alice.token)
    assert_always(server, key, question, revision(rt), allowed=False)

    # A subscription written by another process (models + bump_revision): allowed.
    with rt.sessions() as session:
        session.add(subscription_row(bob.id, sid, "works_invoices", "modify"))
        bump_revision(session, memberships=[(bob.id, sid)])
        session.commit()
    assert_always(server, key, question, revision(rt), allowed=True)

    # The service deactivated through the API: denied; reactivated: allowed.
    server.ok("PATCH", f"/v1/structures/{sid}/services/{sales}", {"active": False}, alice.token)
    assert_always(server, key, question, revision(rt), allowed=False)
    server.ok("PATCH", f"/v1/structures/{sid}/services/{sales}", {"active": True}, alice.token)
    assert_always(server, key, question, revision(rt), allowed=True)

    # The space closed through the API: denied.
    server.ok("PUT", spaces_path, {"spaces": opened}, alice.token)
    assert_always(server, key, question, revision(rt), allowed=False)


def test_a_revision_not_committed_yet_is_a_503_problem(server: Server, rt: Runtime) -> None:
    with rt.sessions() as session:
        _, key = create_client(session, rt, "freshness")
    status, content_type, problem = server.exchange(
        "POST",
        "/v1/checks",
        {
            "user_id": 1,
            "structure_id": 1,
            "action": "structure.view",
            "at_least_revision": revision(rt) + 1_000_000,
        },
        key,
    )
    assert status == 503
    assert content_type.startswith("application/problem+json")
    assert problem["code"] == "revision_unavailable"
