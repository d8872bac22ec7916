"""The AuthZEN Evaluation API (POST /access/v1/evaluation, docs/authzen.md):
the same decisions as the native POST /v1/checks for the same questions, the
structural rules of the AuthZEN 1.0 certification scenario (Basic), and
answers at a policy revision the caller may ask for.
"""

from __future__ import annotations

import pytest

from tests.support.authzen import (
    ACTIONS,
    EVALUATION,
    EVALUATIONS,
    POST_ROUTES,
    ask,
    fill,
    native,
)
from tests.support.rows import grant

# --- real decisions: the same answers as the native checks ----------------------


SPACE_CASES = [
    (who, action, space, service)
    for who in ("ada", "bob", "carol", "dave")
    for action in ("consult", "modify", "create")
    for space, service in (
        ("issued_invoices", None),
        ("issued_invoices", "compta"),
        ("works_invoices", None),
        ("works_invoices", "compta"),
        ("my_account", None),
        ("received_invoices", None),
    )
]


def test_space_decisions_are_those_of_the_native_checks(world):
    w = world
    for who, action, space, service in SPACE_CASES:
        expected = native(w, who, action, space, service)
        r = w.portal.post(EVALUATION, json=ask(w, who, action, w.space(space, service)))
        assert r.status_code == 200, r.json
        assert r.json["decision"] is expected["allowed"], (who, action, space, service)
        assert r.json["context"] == {k: v for k, v in expected.items() if k != "allowed"}


def test_the_world_grants_what_its_records_say(world):
    """A few decisions stated by hand, so the comparison above is not vacuous."""
    w = world

    def decide(who, action, resource):
        return w.portal.post(EVALUATION, json=ask(w, who, action, resource)).json["decision"]

    assert decide("bob", "modify", w.space("issued_invoices")) is True
    assert decide("bob", "consult", w.space("works_invoices", "compta")) is True
    assert decide("bob", "modify", w.space("works_invoices", "compta")) is False
    assert decide("carol", "modify", w.space("works_invoices", "compta")) is True
    assert decide("carol", "consult", w.space("issued_invoices")) is False
    assert decide("dave", "consult", w.space("my_account")) is False
    assert decide("ada", "consult", w.space("received_invoices")) is False  # public-only


@pytest.mark.parametrize(
    "action",
    [
        "structure.view",
        "users.list",
        "principal.designate",
        "history.read",
        "technical_users.manage",
    ],
)
def test_management_decisions_are_those_of_the_native_checks(world, action):
    w = world
    for who in ("ada", "bob", "carol", "dave"):
        expected = native(w, who, action, None, None)
        r = w.portal.post(EVALUATION, json=ask(w, who, action, w.structure()))
        assert r.json["decision"] is expected["allowed"]
        assert r.json["context"] == {k: v for k, v in expected.items() if k != "allowed"}
    assert (
        w.portal.post(EVALUATION, json=ask(w, "ada", action, w.structure())).json["decision"]
        is True
    )


def test_explain_in_the_context_adds_the_facts(world):
    w = world
    r = w.portal.post(
        EVALUATION,
        json=ask(w, "bob", "modify", w.space("issued_invoices"), context={"explain": True}),
    )
    assert r.json["decision"] is True
    assert r.json["context"]["explanation"]["facts"]["subject"]["whole"] is True


# --- Basic: one evaluation --------------------------------------------------------


def test_evaluation_answers_a_boolean_decision_with_the_revision_and_the_rule(world):
    w = world
    r = w.portal.post(EVALUATION, json=ask(w, "bob", "modify", w.space("issued_invoices")))
    assert r.status_code == 200 and r.content_type == "application/json"
    assert r.json["decision"] is True
    assert isinstance(r.json["context"]["revision"], int)
    assert r.json["context"]["rule"].startswith("subscription:")
    denied = w.portal.post(EVALUATION, json=ask(w, "dave", "consult", w.space("issued_invoices")))
    assert denied.json["decision"] is False and denied.json["context"]["reason"]


@pytest.mark.parametrize("missing", ["subject", "action", "resource"])
def test_a_missing_entity_is_a_400(world, missing):
    body = ask(world, "bob", "consult", world.space("issued_invoices"))
    del body[missing]
    r = world.portal.post(EVALUATION, json=body)
    assert r.status_code == 400 and r.content_type == "application/problem+json"
    assert missing in r.json["errors"]


@pytest.mark.parametrize(
    "entity, member",
    [
        ("subject", "type"),
        ("subject", "id"),
        ("action", "name"),
        ("resource", "type"),
        ("resource", "id"),
    ],
)
def test_a_missing_required_member_is_a_400(world, entity, member):
    body = ask(world, "bob", "consult", world.space("issued_invoices"))
    del body[entity][member]
    assert world.portal.post(EVALUATION, json=body).status_code == 400


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "alice"},
        {"action": {"name": 123}},
        {"resource": {"type": "space", "id": 7}},
        {"subject": {"type": "user", "id": "1", "properties": "admin"}},
        {"context": ["x"]},
        {"context": {"at_least_revision": "soon"}},
        {"context": {"explain": "yes"}},
    ],
)
def test_a_member_of_the_wrong_json_type_is_a_400(world, change):
    body = {**ask(world, "bob", "consult", world.space("issued_invoices")), **change}
    assert world.portal.post(EVALUATION, json=body).status_code == 400


@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_body_that_is_not_a_json_object_is_a_400(world, path):
    key = {"Authorization": f"Bearer {world.portal.token}"}
    client = world.portal.client
    text = client.post(path, data='{"subject": {}}', headers={**key, "Content-Type": "text/plain"})
    broken = client.post(
        path, data="{not json", headers={**key, "Content-Type": "application/json"}
    )
    empty = client.post(path, data="", headers={**key, "Content-Type": "application/json"})
    array = client.post(path, json=[1, 2], headers=key)
    assert [x.status_code for x in (text, broken, empty, array)] == [400] * 4


def test_unknown_fields_are_ignored(world):
    w = world
    body = ask(
        w, "bob", "modify", w.space("issued_invoices"), foo="bar", futureField={"nested": True}
    )
    body["subject"]["extra"] = 1
    body["action"]["verb"] = "x"
    body["resource"]["owner"] = "dave"
    r = w.portal.post(EVALUATION, json=body)
    assert r.status_code == 200 and r.json["decision"] is True


def test_context_and_properties_are_accepted_and_do_not_change_the_decision(world):
    w = world
    plain = ask(w, "bob", "modify", w.space("issued_invoices"))
    rich = ask(
        w,
        "dave",
        "modify",
        w.space("issued_invoices"),
        context={"time": "2025-06-27T18:03-07:00", "ip": "192.168.1.1"},
    )
    rich["subject"]["properties"] = {"role": "admin", "department": "Sales"}
    rich["action"]["properties"] = {"method": "GET"}
    rich["resource"]["properties"] = {"status": "active"}
    assert w.portal.post(EVALUATION, json=plain).json["decision"] is True
    r = w.portal.post(EVALUATION, json=rich)
    assert r.status_code == 200 and r.json["decision"] is False  # no admin by assertion


@pytest.mark.parametrize("path", POST_ROUTES)
def test_x_request_id_is_echoed(world, path):
    w = world
    r = w.portal.post(path, json={}, headers={"X-Request-ID": "bfe9eb29-ab87-4ca3"})
    assert r.headers["X-Request-ID"] == "bfe9eb29-ab87-4ca3"
    ok = w.portal.post(
        EVALUATION,
        json=ask(w, "bob", "consult", w.space("my_account")),
        headers={"X-Request-ID": "req-1"},
    )
    assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "req-1"
    assert w.portal.post(EVALUATION, json=ask(w, "bob", "consult", w.space("my_account"))).headers[
        "X-Request-ID"
    ]


def test_the_same_request_gives_the_same_decision(world):
    w = world
    body = ask(w, "carol", "modify", w.space("works_invoices", "compta"))
    assert {w.portal.post(EVALUATION, json=body).json["decision"] for _ in range(5)} == {True}


@pytest.mark.parametrize(
    "subject, action, resource, reason",
    [
        ({"type": "group", "id": "1"}, "consult", None, "unknown subject type"),
        ({"type": "user", "id": "bob@example.org"}, "consult", None, "not a user id"),
        ({"type": "user", "id": "007"}, "consult", None, "not a user id"),
        ({"type": "user", "id": "1\n"}, "consult", None, "not a user id"),
        (None, "read", None, "does not apply to a space"),
        (None, "consult", {"type": "record", "id": "record-1"}, "unknown resource type"),
        (None, "consult", {"type": "space", "id": "issued_invoices"}, "resource id must be"),
        (None, "consult", {"type": "space", "id": "x/issued_invoices"}, "resource id must be"),
        (None, "consult", {"type": "space", "id": "{st}//issued_invoices"}, "resource id must"),
        (None, "consult", {"type": "space", "id": "{st}/no_such_space"}, "unknown space"),
        (None, "consult", {"type": "space", "id": "{st}/nope/issued_invoices"}, "unknown service"),
        (None, "consult", {"type": "space", "id": "999999/issued_invoices"}, "unknown structure"),
        (None, "consult", {"type": "structure", "id": "{st}"}, "not a management action"),
        (
            None,
            "history.read",
            {"type": "space", "id": "{st}/issued_invoices"},
            "does not apply to a space",
        ),
        (None, "structure.view", {"type": "structure", "id": "abc"}, "not a structure id"),
        ({"type": "user", "id": "99999999"}, "consult", None, "unknown subject"),
    ],
)
def test_what_names_nothing_known_is_a_deny_not_an_error(world, subject, action, resource, reason):
    w = world
    body = {
        "subject": subject or w.user("ada"),
        "action": {"name": action},
        "resource": fill(resource, w) if resource else w.space("issued_invoices"),
    }
    r = w.portal.post(EVALUATION, json=body)
    assert r.status_code == 200, r.json
    assert r.json["decision"] is False and reason in r.json["context"]["reason"]


def test_a_service_code_may_contain_a_slash(world):
    w = world
    ada = w.people["ada"]
    made = ada.post(f"/v1/structures/{w.st}/services", json={"code": "north/east", "label": "NE"})
    assert made.status_code == 201
    r = w.portal.post(EVALUATION, json=ask(w, "ada", "modify", w.space("my_account", "north/east")))
    assert (
        r.json["decision"]
        is native(w, "ada", "modify", "my_account", "north/east")["allowed"]
        is True
    )


# --- freshness -----------------------------------------------------------------


def test_at_least_revision_answers_at_that_revision_or_503(world, rt):
    w = world
    current = w.portal.post(EVALUATION, json=ask(w, "bob", "consult", w.space("my_account"))).json[
        "context"
    ]["revision"]
    fresh = w.portal.post(
        EVALUATION,
        json=ask(
            w, "bob", "consult", w.space("my_account"), context={"at_least_revision": current}
        ),
    )
    assert fresh.status_code == 200 and fresh.json["context"]["revision"] >= current
    for path, body in (
        (
            EVALUATION,
            ask(
                w,
                "bob",
                "consult",
                w.space("my_account"),
                context={"at_least_revision": current + 5},
            ),
        ),
        (
            EVALUATIONS,
            {
                "context": {"at_least_revision": current + 5},
                "evaluations": [ask(w, "bob", "consult", w.space("my_account"))],
            },
        ),
        (
            ACTIONS,
            {
                "subject": w.user("bob"),
                "resource": w.structure(),
                "context": {"at_least_revision": current + 5},
            },
        ),
    ):
        r = w.portal.post(path, json=body)
        assert r.status_code == 503 and r.json["code"] == "revision_unavailable"


def test_a_new_grant_is_seen_by_the_next_evaluation(world, rt):
    w = world
    body = ask(w, "dave", "consult", w.space("issued_invoices"))
    assert w.portal.post(EVALUATION, json=body).json["decision"] is False
    grant(rt, w.uid("dave"), w.st, subscriptions=(("issued_invoices", "consult", None),))
    assert w.portal.post(EVALUATION, json=body).json["decision"] is True
