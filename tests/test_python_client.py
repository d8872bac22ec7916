"""The Python client (clients/python, package authz_client) against a live
`authz serve` with 2 workers: read-your-writes on every worker, batches,
permissions, AuthZEN, the decision cache kept right by the change feed, the
Flask decorator and the WSGI middleware, and "service down → denied".

Its unit tests without a service are clients/python/tests (run by `make test`)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import flask
import pytest
from authz_client import AuthzClient, AuthzMiddleware, DecisionCache, Question, require

from authz.config import load_settings
from authz.review.fixtures import load_world
from authz.runtime import build_runtime, close_runtime
from authz.workflows.clients import create_client
from models import User
from tests.support.backend import POSTGRES_URL
from tests.support.live import Server, authz_command, postgres_schema, serve_env, serving

PASSWORD = "correct horse battery staple"
WORLD = {
    "structures": {
        "acme": {
            "kind": "private",
            "opened": ["issued_invoices", "manager_activities"],
            "services": {"sales": {"active": True}},
        }
    },
    "users": {
        "alice": {"status": "active", "login_email": "alice@example.org"},
        "victor": {"status": "active", "login_email": "victor@example.org"},
    },
    "attachments": [
        {"user": "alice", "structure": "acme", "role": "principal", "valid_from": -30},
        {"user": "victor", "structure": "acme", "role": "simple", "valid_from": -30},
    ],
    "subscriptions": [
        {"user": "victor", "structure": "acme", "space": "issued_invoices", "level": "modify"}
    ],
}


@dataclass
class Live:
    server: Server
    url: str
    key: str
    alice: int
    victor: int
    acme: int

    def token(self, login_email: str) -> str:
        status, answer = self.server.call(
            "POST", "/v1/auth/token", {"login_email": login_email, "password": PASSWORD}
        )
        assert status == 200, answer
        return answer["access_token"]

    def victor_may(self, action: str = "modify") -> Question:
        return Question(self.victor, self.acme, "issued_invoices", action)


@contextmanager
def database(tmp_path: Path) -> Iterator[str]:
    if POSTGRES_URL:
        with postgres_schema() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'authz.db'}"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with database(tmp_path) as url:
        # One thread per worker: a busy worker leaves the next connection to another.
        env = serve_env(url, tmp_path / "var", threads="1")
        subprocess.run([authz_command(), "db", "upgrade"], env=env, check=True, timeout=120)
        rt = build_runtime(load_settings(environ=env))
        try:
            with rt.sessions() as session:
                world = load_world(session, WORLD)
                session.commit()
                alice = session.get(User, world.users["alice"])
                assert alice is not None
                alice.password_hash = rt.hasher.hash(PASSWORD)
                session.commit()
                _, key = create_client(session, rt, "portal")
        finally:
            close_runtime(rt)
        with serving(env, tmp_path / "serve.log", workers=2) as server:
            yield Live(
                server,
                f"http://127.0.0.1:{server.port}",
                key,
                world.users["alice"],
                world.users["victor"],
                world.structures["acme"],
            )


def on_every_worker(live: Live, ask) -> list:
    """Ask concurrently until each worker of the server answered at least once."""
    mark = len(live.server.served())
    answers: list = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(30):
            answers += pool.map(lambda _: ask(), range(4))
            if {pid for pid, *_ in live.server.served()[mark:]} >= live.server.workers():
                return answers
    pytest.fail("not every worker answered")


def test_a_check_at_the_revision_a_write_returned_sees_it_on_every_worker(live):
    with AuthzClient(live.url, live.key) as authz:
        assert authz.check(*_args(live.victor_may()))
        # Alice removes Victor in her own name, through the same client: the
        # write's revision is remembered and every later decision waits for it.
        answer = authz.request(
            "DELETE",
            f"/v1/structures/{live.acme}/attachments/{live.victor}",
            token=live.token("alice@example.org"),
        )
        assert authz.revision == answer["revision"]
        assert not authz.check(*_args(live.victor_may()))

    def elsewhere():
        """Another process of the application, told the revision (a new client:
        a new connection, which any worker may take)."""
        with AuthzClient(live.url, live.key) as other:
            return other.check(*_args(live.victor_may()), at_least_revision=answer["revision"])

    decisions = on_every_worker(live, elsewhere)
    assert {(d.allowed, d.error) for d in decisions} == {(False, None)}
    assert min(d.revision for d in decisions) >= answer["revision"]


def _args(q: Question) -> tuple:
    return (q.user_id, q.structure_id, q.space, q.action)


def test_batches_permissions_and_authzen_answer_through_the_client(live):
    with AuthzClient(live.url, live.key) as authz:
        managing = Question(live.victor, live.acme, "manager_activities", "consult")
        decisions = authz.check_many([live.victor_may("modify"), managing, live.victor_may()])
        assert [d.allowed for d in decisions] == [True, False, True]
        rights = authz.permissions(live.victor)
        assert [r["structure_id"] for r in rights["items"]] == [live.acme]
        victor = {"type": "user", "id": str(live.victor)}
        space = {"type": "space", "id": f"{live.acme}/issued_invoices"}
        assert authz.evaluate(victor, {"name": "modify"}, space)
        managers = {"type": "space", "id": f"{live.acme}/manager_activities"}
        assert [
            d.allowed
            for d in authz.evaluate_many(
                [{"resource": space}, {"resource": managers}],
                subject=victor,
                action={"name": "consult"},
            )
        ] == [True, False]
        who = authz.search_subjects(space, {"name": "modify"})
        assert str(live.victor) in {s["id"] for s in who["results"]}
        where = authz.search_resources(victor, {"name": "modify"})
        assert space["id"] in {r["id"] for r in where["results"]}
        what = authz.search_actions(victor, space)
        assert {a["name"] for a in what["results"]} >= {"consult", "modify"}


def test_the_cache_answers_until_the_change_feed_names_a_change_within_a_second(live):
    cache = DecisionCache(wait=5)
    with AuthzClient(live.url, live.key, cache=cache) as authz:
        deadline = time.monotonic() + 10
        while not cache.usable() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.usable()
        first = authz.check(*_args(live.victor_may()))
        assert first and not first.cached
        again = authz.check(*_args(live.victor_may()))
        assert again and again.cached
        # A write this client does not see (another application made it)...
        status, _ = live.server.call(
            "DELETE",
            f"/v1/structures/{live.acme}/attachments/{live.victor}",
            key=live.token("alice@example.org"),
        )
        assert status == 200
        written = time.monotonic()
        # ...drops the entry as soon as the feed names it.
        while cache.get(live.victor_may()) is not None and time.monotonic() - written < 3:
            time.sleep(0.02)
        assert cache.get(live.victor_may()) is None
        assert time.monotonic() - written < 1.0
        assert not authz.check(*_args(live.victor_may()))


def test_enforcement_allows_refuses_and_refuses_when_the_service_is_down(live):
    authz = AuthzClient(live.url, live.key, retries=1, timeout=1.0)
    app = flask.Flask(__name__)

    @app.get("/acme/<space>")
    @require(authz, lambda space: Question(live.victor, live.acme, space, "consult"))
    def space_page(space):
        return space

    protected = AuthzMiddleware(
        lambda _environ, start: (start("200 OK", []), [b"ok"])[1],
        authz,
        lambda environ: Question(live.victor, live.acme, environ["PATH_INFO"][1:], "consult"),
    )

    def through_middleware(space: str) -> str:
        statuses: list[str] = []
        b"".join(protected({"PATH_INFO": f"/{space}"}, lambda s, _h: statuses.append(s)))
        return statuses[0]

    web = app.test_client()
    assert web.get("/acme/issued_invoices").status_code == 200
    assert through_middleware("issued_invoices") == "200 OK"
    refused = web.get("/acme/manager_activities")
    assert (refused.status_code, refused.mimetype) == (403, "application/problem+json")
    assert refused.json["code"] == "forbidden"
    assert through_middleware("manager_activities").startswith("403")

    live.server.stop()  # the service is down: every decision is a denial
    down = authz.check(*_args(live.victor_may()))
    assert down.allowed is False and down.error
    refused = web.get("/acme/issued_invoices")
    assert (refused.status_code, refused.json["code"]) == (403, "authorization_unavailable")
    assert through_middleware("issued_invoices").startswith("403")
    authz.close()
