"""The client without a service: retries, fail-closed, read-your-writes, the
decision cache and the enforcement middleware, over httpx's MockTransport.
The same client against a live `authz serve`: the service's
tests/test_python_client.py."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from authz_client import (
    AuthzClient,
    AuthzError,
    AuthzMiddleware,
    Decision,
    DecisionCache,
    Question,
    require,
)

Q = Question(user_id=1, structure_id=2, space="issued_invoices", action="consult")


def answering(*responses):
    """A transport answering the given (status, body, headers) in turn, and
    recording every request; an exception instance is raised instead."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        status, body, headers = (*item, {})[:3] if len(item) == 2 else item
        return httpx.Response(status, json=body, headers=headers)

    return httpx.MockTransport(handle), seen


def batch(*allowed, revision=7):
    return {
        "revision": revision,
        "policy_version": 1,
        "decisions": [{"allowed": a, "revision": revision} for a in allowed],
    }


def client(transport, **options):
    return AuthzClient("http://authz.test", "key", transport=transport, backoff=0.001, **options)


def test_an_allow_is_an_allow_and_the_key_is_sent():
    transport, seen = answering((200, batch(True)))
    decision = client(transport).check(1, 2, "issued_invoices", "consult")
    assert decision and decision.revision == 7
    assert seen[0].headers["Authorization"] == "Bearer key"
    assert json.loads(seen[0].content)["checks"][0]["space"] == "issued_invoices"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        (503, {"code": "unavailable"}),
        (500, {"code": "internal_error"}),
        (401, {"code": "unauthenticated"}),
        (200, {"unexpected": True}),
        (200, {"decisions": [{"allowed": "yes"}], "revision": 1}),
    ],
)
def test_every_error_is_a_denial_never_an_allow(failure):
    transport, _ = answering(failure)
    decision = client(transport).check(1, 2, "issued_invoices", "consult")
    assert decision.allowed is False and decision.error


def test_raise_on_error_raises_instead_of_denying():
    transport, _ = answering(httpx.ConnectError("refused"))
    with pytest.raises(AuthzError):
        client(transport, raise_on_error=True).check(1, 2, "issued_invoices", "consult")


def test_503_and_connection_errors_are_retried_then_answered():
    transport, seen = answering(
        httpx.ConnectError("refused"), (503, {"code": "unavailable"}), (200, batch(True))
    )
    assert client(transport, retries=2).check(1, 2, "issued_invoices", "consult")
    assert len(seen) == 3


def test_retries_are_bounded():
    transport, seen = answering((503, {"code": "unavailable"}))
    assert not client(transport, retries=3).check(1, 2, "issued_invoices", "consult")
    assert len(seen) == 4


def test_a_refusal_of_the_request_is_not_retried():
    transport, seen = answering((422, {"code": "validation_failed"}))
    assert not client(transport).check(1, 2, "issued_invoices", "consult")
    assert len(seen) == 1


def test_a_write_revision_is_sent_with_the_next_decisions():
    transport, seen = answering(
        (200, {"id": 3, "revision": 41}, {"Authz-Revision": "41"}), (200, batch(True, revision=41))
    )
    authz = client(transport)
    authz.request("POST", "/v1/attachment-requests/3/validation", json={}, token="person")
    assert seen[0].headers["Authorization"] == "Bearer person"
    authz.check(1, 2, "issued_invoices", "consult")
    assert json.loads(seen[1].content)["at_least_revision"] == 41


def test_check_many_answers_in_order_and_all_denied_on_error():
    transport, _ = answering((200, batch(True, False)))
    other = Question(3, 2, "issued_invoices", "modify")
    assert [d.allowed for d in client(transport).check_many([Q, other])] == [True, False]
    transport, _ = answering(httpx.ConnectError("down"))
    assert [d.allowed for d in client(transport).check_many([Q, other])] == [False, False]


def test_authzen_evaluations_fail_closed():
    transport, _ = answering((200, {"evaluations": [{"decision": True}]}))
    assert [d.allowed for d in client(transport).evaluate_many([{}, {}])] == [False, False]
    transport, _ = answering((200, {"decision": True, "context": {"revision": 9}}))
    authz = client(transport)
    assert authz.evaluate({"type": "user", "id": "1"}, {"name": "consult"}, {"type": "space"})
    assert authz.revision == 9


# --- the cache ---------------------------------------------------------------------


def cached(position=10):
    cache = DecisionCache(max_entries=3)
    cache.apply({"revisions": [], "next_after_revision": position})
    return cache


def test_the_cache_answers_what_it_was_given_until_the_feed_names_it():
    cache = cached()
    cache.put(Q, Decision(True, revision=10))
    assert cache.get(Q).allowed and cache.get(Q).cached
    # A change of another user leaves it; one of this user on this structure drops it.
    cache.apply(
        {
            "revisions": [{"revision": 11, "changes": [{"kind": "user", "user_id": 9}]}],
            "next_after_revision": 11,
        }
    )
    assert cache.get(Q)
    cache.apply(
        {
            "revisions": [
                {
                    "revision": 12,
                    "changes": [{"kind": "membership", "user_id": 1, "structure_id": 2}],
                }
            ],
            "next_after_revision": 12,
        }
    )
    assert cache.get(Q) is None


@pytest.mark.parametrize("kind", ["structure", "policy", "all", "something new"])
def test_a_structure_a_policy_or_an_unknown_change_drops_the_entry(kind):
    cache = cached()
    cache.put(Q, Decision(True, revision=10))
    cache.apply(
        {
            "revisions": [{"revision": 11, "changes": [{"kind": kind, "structure_id": 2}]}],
            "next_after_revision": 11,
        }
    )
    assert cache.get(Q) is None


def test_a_decision_older_than_the_feed_position_is_not_cached():
    cache = cached(position=10)
    cache.put(Q, Decision(True, revision=9))
    assert cache.get(Q) is None


def test_a_read_of_ones_own_write_skips_an_older_entry():
    cache = cached()
    cache.put(Q, Decision(True, revision=10))
    assert cache.get(Q, at_least=11) is None


def test_the_cache_is_bounded_least_recently_used_first():
    cache = cached()
    questions = [Question(u, 2, "s", "consult") for u in range(4)]
    for q in questions:
        cache.put(q, Decision(True, revision=10))
    assert len(cache) == 3 and cache.get(questions[0]) is None


def test_a_cache_that_has_not_heard_from_the_feed_answers_nothing():
    cache = DecisionCache()
    cache.put(Q, Decision(True, revision=10))
    assert cache.get(Q) is None
    cache = cached()
    cache.put(Q, Decision(True, revision=10))
    cache.max_staleness = 0
    assert cache.get(Q) is None


def test_a_410_empties_the_cache_and_starts_again_from_the_latest():
    page = {"revisions": [], "next_after_revision": 20, "latest_revision": 20, "more": False}
    transport, seen = answering((200, page), (410, {"code": "changes_gone"}), (200, page))
    cache = DecisionCache(wait=0.01, retry_seconds=0.01)
    authz = client(transport, cache=cache)
    try:
        for _ in range(200):
            if len(seen) >= 3:
                break
            time.sleep(0.01)
        assert [r.url.params.get("after_revision") for r in seen[:3]] == [None, "20", None]
    finally:
        authz.close()


# --- enforcement ---------------------------------------------------------------------


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"invoices"]


def call(app, path="/"):
    status = []
    body = b"".join(app({"PATH_INFO": path}, lambda s, h: status.append((s, dict(h)))))
    return status[0][0], status[0][1], body


def test_the_wsgi_middleware_passes_an_allow_and_refuses_the_rest_with_a_problem():
    allowed, _ = answering((200, batch(True)))
    app = AuthzMiddleware(wsgi_app, client(allowed), lambda _env: Q)
    assert call(app)[0] == "200 OK"
    down, _ = answering(httpx.ConnectError("down"))
    status, headers, body = call(AuthzMiddleware(wsgi_app, client(down), lambda _env: Q))
    assert status.startswith("403") and headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["code"] == "authorization_unavailable"


def test_the_wsgi_middleware_leaves_unprotected_requests_and_refuses_unbuildable_ones():
    transport, seen = answering((200, batch(False)))
    app = AuthzMiddleware(wsgi_app, client(transport), lambda _env: None)
    assert call(app)[0] == "200 OK" and not seen
    app = AuthzMiddleware(wsgi_app, client(transport), lambda _env: 1 / 0)
    assert call(app)[0].startswith("403")


def test_the_flask_decorator_answers_403_problem_on_deny():
    flask = pytest.importorskip("flask")
    transport, _ = answering((200, batch(False)))
    app = flask.Flask(__name__)

    @app.get("/structures/<int:structure_id>/invoices")
    @require(client(transport), lambda structure_id: Question(1, structure_id, "s", "consult"))
    def invoices(structure_id):
        return "invoices"

    r = app.test_client().get("/structures/2/invoices")
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    assert r.json["code"] == "forbidden"
