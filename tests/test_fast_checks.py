"""POST /v1/checks's fast path (api/fastcheck.py) answers exactly as the Flask
route does — status, headers and body, refusals and errors included — and
hands to Flask every request it cannot answer that way, counting nothing
twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY
from werkzeug.test import Client

from api.fastcheck import FastChecks
from authz import metrics
from authz.errors import Unavailable
from authz.review.fixtures import load_world
from authz.workflows import clients
from tests.support.callers import bearer_token

WORLD = {
    "structures": {
        "acme": {"kind": "private", "opened": ["issued_invoices"], "services": {"S1": {}}},
        "other": {"kind": "private"},
    },
    "users": {"ann": {"status": "active"}, "bob": {"status": "active"}},
    "attachments": [
        {"user": "ann", "structure": "acme", "role": "principal", "valid_from": -30},
        {"user": "bob", "structure": "acme", "role": "simple", "valid_from": -30},
    ],
}
CHECK = {"user_id": 1, "structure_id": 1, "action": "c"}
ENVIRON = {"REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "fast-check-test"}


@pytest.fixture
def setup(app, rt):
    with rt.sessions() as s:
        ids = load_world(s, WORLD)
        s.commit()
        _, key = clients.create_client(s, rt, "portal")
    middleware = app.wsgi_app
    assert isinstance(middleware, FastChecks)
    fast = app.test_client()
    flask_only = Client(middleware.flask, app.response_class)
    return {
        "ids": ids,
        "key": key,
        "ann": bearer_token(rt, ids.users["ann"]),
        "fast": fast,
        "flask": flask_only,
        "middleware": middleware,
    }


def send(client: Any, body: Any, headers: dict[str, str], method: str = "POST") -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.open(
        "/v1/checks",
        method=method,
        data=data,
        headers={"Content-Type": "application/json", **headers},
        environ_base=ENVIRON,
    )


def comparable(response: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body, with a request id the server made up replaced."""
    headers = dict(response.headers)
    body = response.get_data()
    made_up = headers.get("X-Request-ID", "")
    if made_up and made_up != "given-id-1":
        headers["X-Request-ID"] = "<made up>"
        body = body.replace(made_up.encode(), b"<made up>")
    return response.status_code, headers, body


def both(setup: dict[str, Any], body: Any, headers: dict[str, str], method: str = "POST"):
    """The Flask route's answer, then the middleware's (the first also fills
    the identity cache, as it does when serving)."""
    routed = send(setup["flask"], body, headers, method)
    middleware = setup["middleware"]
    before = middleware.answered
    served = send(setup["fast"], body, headers, method)
    assert comparable(served) == comparable(routed)
    return served, middleware.answered - before


def test_answers_are_the_routes_byte_for_byte(setup):
    ids, key = setup["ids"], setup["key"]
    ann, bob = ids.users["ann"], ids.users["bob"]
    acme, other = ids.structures["acme"], ids.structures["other"]
    client = {"Authorization": f"Bearer {key}"}
    answered = [
        {"user_id": bob, "structure_id": acme, "space": "issued_invoices", "action": "consult"},
        {"user_id": bob, "structure_id": acme, "space": "issued_invoices", "action": "modify"},
        {"user_id": bob, "structure_id": other, "space": "issued_invoices", "action": "consult"},
        {"user_id": ann, "structure_id": acme, "action": "users.manage"},
        {"user_id": ann, "structure_id": acme, "action": "users.manage", "space": None},
        {
            "user_id": ann,
            "structure_id": acme,
            "space": "issued_invoices",
            "action": "consult",
            "service": "S1",
            "explain": True,
        },
        {"user_id": bob, "structure_id": acme, "action": "users.manage", "explain": True},
        {"user_id": 999_999, "structure_id": acme, "action": "consult", "space": "x"},
        {"user_id": bob, "structure_id": acme, "action": "consult", "at_least_revision": 0},
    ]
    for body in answered:
        served, fast = both(setup, body, client)
        assert served.status_code == 200 and fast == 1, body
    for headers in ({"X-Request-ID": "given-id-1"}, {"X-Request-ID": "not valid!"}):
        served, fast = both(setup, answered[0], {**client, **headers})
        assert fast == 1
    assert served.headers["X-Request-ID"] != "not valid!"


def test_a_revision_not_yet_committed_is_the_routes_503(setup):
    ids = setup["ids"]
    body = {
        "user_id": ids.users["bob"],
        "structure_id": ids.structures["acme"],
        "action": "consult",
        "space": "issued_invoices",
        "at_least_revision": 10**9,
    }
    served, fast = both(setup, body, {"Authorization": f"Bearer {setup['key']}"})
    assert served.status_code == 503 and served.json["code"] == "revision_unavailable"
    assert fast == 1


def test_a_person_about_themself_is_answered_about_another_refused(setup):
    ids = setup["ids"]
    me = {"Authorization": f"Bearer {setup['ann']}"}
    mine = {"user_id": ids.users["ann"], "structure_id": ids.structures["acme"], "action": "x"}
    served, fast = both(setup, mine, me)
    assert served.status_code == 200 and fast == 1
    theirs = {**mine, "user_id": ids.users["bob"]}
    served, fast = both(setup, theirs, me)
    assert served.status_code == 403 and served.json["code"] == "subject_not_allowed"
    assert fast == 0


@pytest.mark.parametrize(
    "body, headers, method, status",
    [
        ({"action": "consult"}, {}, "POST", 422),  # missing members
        ({"user_id": 1, "structure_id": 1, "action": "c", "extra": 1}, {}, "POST", 422),
        ({"user_id": "1", "structure_id": 1, "action": "c"}, {}, "POST", 422),
        # marshmallow's Boolean reads "yes"; the exact check does not: Flask answers
        ({"user_id": 1, "structure_id": 1, "action": "c", "explain": "yes"}, {}, "POST", 200),
        (b"{not json", {}, "POST", 400),
        # read as webargs reads it: strict UTF-8, no byte-order mark
        (b"\xef\xbb\xbf" + json.dumps(CHECK).encode(), {}, "POST", 400),
        (json.dumps(CHECK).encode("utf-16"), {}, "POST", 400),
        (CHECK, {"Content-Type": "text/plain"}, "POST", 422),
        (b"", {}, "POST", 422),  # an empty body
        (CHECK, {"Authorization": ""}, "POST", 401),
        (CHECK, {"Authorization": "Bearer ak_x"}, "POST", 401),
        (CHECK, {"Authorization": "Basic a"}, "POST", 401),
        (CHECK, {}, "PUT", 405),
    ],
)
def test_what_the_fast_path_does_not_answer_flask_does(setup, body, headers, method, status):
    all_headers = {"Authorization": f"Bearer {setup['key']}", **headers}
    served, fast = both(setup, body, all_headers, method)
    assert served.status_code == status
    assert fast == 0


def test_a_revoked_key_is_refused_by_the_next_request(setup, rt):
    ids = setup["ids"]
    body = {"user_id": ids.users["bob"], "structure_id": ids.structures["acme"], "action": "x"}
    headers = {"Authorization": f"Bearer {setup['key']}"}
    _, fast = both(setup, body, headers)
    assert fast == 1  # cached: answered by the fast path
    with rt.sessions() as s:
        clients.revoke_client(s, rt, "portal")
    served = send(setup["fast"], body, headers)
    assert served.status_code == 401 and served.json["code"] == "invalid_token"


def sample(name: str, **labels: str) -> float:
    metrics.flush()  # the hot path's counts are written a second at a time
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_fast_answer_is_counted_and_logged_once(setup, rt):
    ids = setup["ids"]
    body = {"user_id": ids.users["bob"], "structure_id": ids.structures["acme"], "action": "x"}
    headers = {"Authorization": f"Bearer {setup['key']}"}
    send(setup["fast"], body, headers)  # resolves the key (through Flask)
    decisions = sample("authz_decisions_total", api="check", result="denied")
    requests = sample("authz_http_requests_total", method="POST", route="/v1/checks", status="200")
    before = setup["middleware"].answered
    assert send(setup["fast"], body, headers).status_code == 200
    assert setup["middleware"].answered == before + 1
    assert sample("authz_decisions_total", api="check", result="denied") == decisions + 1
    assert (
        sample("authz_http_requests_total", method="POST", route="/v1/checks", status="200")
        == requests + 1
    )


def test_an_unreadable_store_is_the_routes_503_answered_once(setup, rt, monkeypatch):
    """The revision poll failed (it waited its timeout): the fast path answers
    the route's problem itself instead of handing over to a second wait."""
    ids = setup["ids"]
    body = {"user_id": ids.users["bob"], "structure_id": ids.structures["acme"], "action": "x"}
    headers = {"Authorization": f"Bearer {setup['key']}", "X-Request-ID": "given-id-1"}
    send(setup["fast"], body, headers)
    polls = []

    def unreadable() -> int:
        polls.append(1)
        raise Unavailable(
            "The policy store cannot be read; decisions are refused.",
            code="policy_store_unavailable",
        )

    monkeypatch.setattr(rt.decider, "identity_revision", unreadable)
    served, fast = both(setup, body, headers)
    assert served.status_code == 503 and served.json["code"] == "policy_store_unavailable"
    assert fast == 1 and len(polls) == 2  # one by the route, one by the fast path
