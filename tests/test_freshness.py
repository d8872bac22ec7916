"""Freshness across processes: `authz serve` with two gunicorn workers, each with
its own decision index, on the test's database. A decision asked with
`at_least_revision` = the revision a change was committed at reflects that
change, whichever worker answers, and a revision not committed yet is a 503.

Grants and revokes are written through the API (opening / closing a space,
deactivating / reactivating a service) and through the models with
`bump_revision` from this test's process, as another writer would.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authz.runtime import Runtime
from authz.workflows.clients import create_client
from authz.workflows.records import bump_revision
from tests.support.api import VALID_SIRETS, Api
from tests.support.rows import attachment_row, revision, subscription_row, user_row

READY_TIMEOUT = 30.0  # seconds for both workers to start
HTTP_TIMEOUT = 10.0  # seconds per request
CHECKS_PER_PHASE = 24  # enough, sent 4 at a time, for both workers to answer
QUESTION = {"service": "sales", "space": "works_invoices", "action": "create"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running `authz serve` and the way to call it."""

    port: int
    process: subprocess.Popen
    log: Path

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, str, Any]:
        """(status, content type, decoded JSON body), on a new connection each time
        so that requests spread over the workers."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            headers = {"Connection": "close", "Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            conn.request(
                method, path, body=None if body is None else json.dumps(body), headers=headers
            )
            response = conn.getresponse()
            payload = response.read()
            return (
                response.status,
                response.getheader("Content-Type", ""),
                json.loads(payload) if payload else None,
            )
        finally:
            conn.close()

    def ok(
        self, method: str, path: str, body: Any = None, token: str | None = None, status: int = 200
    ) -> Any:
        got, _, answer = self.call(method, path, body, token)
        assert got == status, (method, path, got, answer)
        return answer

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited:\n{self.log.read_text()}"
            try:
                if self.call("GET", "/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server not ready after {READY_TIMEOUT}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Stop gunicorn and its workers (the whole process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


@pytest.fixture
def server(database_url: str, rt: Runtime, tmp_path: Path) -> Iterator[Server]:
    """`authz serve --workers 2` on the test's (migrated) database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env.update(
        {
            "AUTHZ_DATABASE_URL": database_url,
            "AUTHZ_VAR_DIR": str(tmp_path / "served"),
            "AUTHZ_MAIL_BACKGROUND": "false",
            "AUTHZ_ARGON2_TIME_COST": "1",
            "AUTHZ_ARGON2_MEMORY_KIB": "1024",
            "AUTHZ_ARGON2_PARALLELISM": "1",
        }
    )
    port, log = _free_port(), tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("authz")),
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Server(port=port, process=process, log=log)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


def decisions(server: Server, key: str, body: dict[str, Any]) -> list[tuple[int, Any]]:
    """CHECKS_PER_PHASE answers to the same check, four requests at a time."""

    def ask(_: int) -> tuple[int, Any]:
        status, _headers, answer = server.call("POST", "/v1/checks", body, key)
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
    opened = server.ok("GET", spaces_path, token=alice.token)["spaces"]
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
    status, content_type, problem = server.call(
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
