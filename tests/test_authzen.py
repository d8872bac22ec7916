"""The OpenID AuthZEN Authorization API 1.0 (docs/authzen.md).

Structural rules follow the AuthZEN 1.0 certification scenario (Basic, Batch,
Search, Discovery); decisions are checked against the native POST /v1/checks
for the same questions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import pytest

from api.authzen import wire
from authz.workflows.clients import create_client
from authz.workflows.records import bump_revision
from models import Attachment, Subscription
from tests.support.api import Api

EVALUATION = "/access/v1/evaluation"
EVALUATIONS = "/access/v1/evaluations"
SUBJECTS = "/access/v1/search/subject"
RESOURCES = "/access/v1/search/resource"
ACTIONS = "/access/v1/search/action"
POST_ROUTES = [EVALUATION, EVALUATIONS, SUBJECTS, RESOURCES, ACTIONS]


@dataclass
class World:
    """One private structure ACME with a service `compta`, and four people:
    ada (principal), bob (simple, whole structure, subscriptions), carol (simple,
    on `compta` only), dave (not attached). `portal` calls with an API key."""

    portal: Api
    people: dict[str, Api]
    st: int
    service_id: int

    def uid(self, name: str) -> int:
        return self.people[name].user["id"]

    def user(self, name: str) -> dict[str, str]:
        return {"type": "user", "id": str(self.uid(name))}

    def space(self, code: str, service: str | None = None) -> dict[str, str]:
        middle = f"{service}/" if service else ""
        return {"type": "space", "id": f"{self.st}/{middle}{code}"}

    def structure(self) -> dict[str, str]:
        return {"type": "structure", "id": str(self.st)}


def grant(
    rt,
    user_id: int,
    structure_id: int,
    *,
    role: str = "simple",
    service_id: int | None = None,
    subscriptions: tuple = (),
) -> None:
    """A validated attachment and subscriptions, as a manager's validation would
    leave them, with the policy revision bumped in the same transaction."""
    with rt.sessions() as s:
        s.add(
            Attachment(
                user_id=user_id,
                structure_id=structure_id,
                role=role,
                status="validated",
                service_id=service_id,
                valid_from=dt.date.today() - dt.timedelta(days=1),
            )
        )
        for space, level, sub_service in subscriptions:
            s.add(
                Subscription(
                    user_id=user_id,
                    structure_id=structure_id,
                    space_code=space,
                    level=level,
                    service_id=sub_service,
                    status="validated",
                )
            )
        bump_revision(s, memberships=[(user_id, structure_id)])
        s.commit()


@pytest.fixture
def world(api, rt, structure_of) -> World:
    with rt.sessions() as s:
        _, key = create_client(s, rt, "invoicing portal")
    people = {
        name: api.person(f"{name}@example.org", first=name.title())
        for name in ("ada", "bob", "carol", "dave")
    }
    ada = people["ada"]
    st = structure_of(ada, "ACME")["id"]
    created = ada.post(
        f"/v1/structures/{st}/services", json={"code": "compta", "label": "Comptabilité"}
    )
    assert created.status_code == 201, created.json
    service_id = created.json["id"]
    opened = ada.put(
        f"/v1/structures/{st}/spaces",
        json={
            "spaces": [
                {"space": "my_account"},
                {"space": "manager_activities"},
                {"space": "issued_invoices"},
                {"space": "works_invoices", "service_id": service_id},
            ]
        },
    )
    assert opened.status_code == 200, opened.json
    w = World(Api(api.client, rt, key), people, st, service_id)
    grant(
        rt,
        w.uid("bob"),
        st,
        subscriptions=(
            ("issued_invoices", "modify", None),
            ("works_invoices", "consult", service_id),
        ),
    )
    grant(
        rt,
        w.uid("carol"),
        st,
        service_id=service_id,
        subscriptions=(("works_invoices", "modify", service_id),),
    )
    return w


def ask(w: World, who: str, action: str, resource: dict, **extra) -> dict:
    return {"subject": w.user(who), "action": {"name": action}, "resource": resource, **extra}


# --- real decisions: the same answers as the native checks ----------------------


def native(w: World, who: str, action: str, space: str | None, service: str | None):
    r = w.portal.post(
        "/v1/checks",
        json={
            "user_id": w.uid(who),
            "structure_id": w.st,
            "space": space,
            "service": service,
            "action": action,
        },
    )
    assert r.status_code == 200, r.json
    return r.json


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


# --- who may call ----------------------------------------------------------------


@pytest.mark.parametrize("path", POST_ROUTES)
def test_an_api_key_or_a_token_is_required(world, api, path):
    body = ask(world, "bob", "consult", world.space("my_account"))
    r = api.post(path, json=body)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    forged = api.post(
        path, json=body, headers={"Authorization": "Bearer ak_0123456789abcdef_" + "x" * 43}
    )
    assert forged.status_code == 401


def test_a_person_may_ask_about_themself_only(world):
    w = world
    bob = w.people["bob"]
    mine = bob.post(EVALUATION, json=ask(w, "bob", "modify", w.space("issued_invoices")))
    assert mine.status_code == 200 and mine.json["decision"] is True
    other = bob.post(EVALUATION, json=ask(w, "carol", "consult", w.space("my_account")))
    assert other.status_code == 403 and other.json["code"] == "subject_not_allowed"
    batch = bob.post(
        EVALUATIONS,
        json={
            "resource": w.space("my_account"),
            "action": {"name": "consult"},
            "evaluations": [{"subject": w.user("bob")}, {"subject": w.user("carol")}],
        },
    )
    assert batch.status_code == 403
    for path, body in (
        (
            RESOURCES,
            {
                "subject": w.user("carol"),
                "action": {"name": "consult"},
                "resource": {"type": "space"},
            },
        ),
        (ACTIONS, {"subject": w.user("carol"), "resource": w.structure()}),
    ):
        assert bob.post(path, json=body).status_code == 403
        body["subject"] = w.user("bob")
        assert bob.post(path, json=body).status_code == 200


def test_only_client_applications_list_subjects(world):
    w = world
    body = {
        "subject": {"type": "user"},
        "action": {"name": "consult"},
        "resource": w.space("my_account"),
    }
    r = w.people["ada"].post(SUBJECTS, json=body)
    assert r.status_code == 403 and r.json["code"] == "subject_not_allowed"
    assert w.portal.post(SUBJECTS, json=body).status_code == 200


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


# --- Batch: evaluations ------------------------------------------------------------


def test_evaluations_take_top_level_defaults_and_item_overrides(world):
    w = world
    r = w.portal.post(
        EVALUATIONS,
        json={
            "subject": w.user("bob"),
            "action": {"name": "modify"},
            "context": {"time": "2025-06-27T18:03-07:00"},
            "evaluations": [
                {"resource": w.space("issued_invoices")},
                {"resource": w.space("works_invoices", "compta")},
                {"resource": w.space("works_invoices", "compta"), "action": {"name": "consult"}},
                {
                    "resource": w.space("works_invoices", "compta"),
                    "subject": w.user("carol"),
                    "context": {"source": "override"},
                },
            ],
        },
    )
    assert r.status_code == 200
    assert "decision" not in r.json
    assert [e["decision"] for e in r.json["evaluations"]] == [True, False, True, True]


def test_evaluations_without_defaults_are_answered_in_order(world):
    w = world
    r = w.portal.post(
        EVALUATIONS,
        json={
            "evaluations": [
                ask(w, "bob", "modify", w.space("issued_invoices")),
                ask(w, "dave", "modify", w.space("issued_invoices")),
                ask(w, "ada", "principal.designate", w.structure()),
            ]
        },
    )
    assert [e["decision"] for e in r.json["evaluations"]] == [True, False, True]
    assert len({e["context"]["revision"] for e in r.json["evaluations"]}) == 1


def test_an_item_missing_type_or_id_takes_it_from_the_default_entity(world):
    w = world
    r = w.portal.post(
        EVALUATIONS,
        json={
            "subject": w.user("bob"),
            "action": {"name": "modify"},
            "resource": {"type": "space"},
            "evaluations": [
                {"resource": {"id": f"{w.st}/issued_invoices", "properties": {"x": 1}}},
                {"resource": {"type": "space", "id": f"{w.st}/works_invoices"}},
                {
                    "subject": {"id": str(w.uid("dave"))},
                    "resource": {"id": f"{w.st}/issued_invoices"},
                },
            ],
        },
    )
    assert r.status_code == 200
    assert [e["decision"] for e in r.json["evaluations"]] == [True, False, False]


@pytest.mark.parametrize("evaluations", [None, []])
def test_evaluations_without_items_behave_as_one_evaluation(world, evaluations):
    w = world
    body = ask(w, "bob", "modify", w.space("issued_invoices"))
    if evaluations is not None:
        body["evaluations"] = evaluations
    r = w.portal.post(EVALUATIONS, json=body)
    assert r.status_code == 200 and r.json["decision"] is True
    assert "evaluations" not in r.json
    del body["subject"]
    assert w.portal.post(EVALUATIONS, json=body).status_code == 400


def test_an_item_that_cannot_be_evaluated_is_a_deny_with_its_error(world):
    w = world
    r = w.portal.post(
        EVALUATIONS,
        json={
            "subject": w.user("bob"),
            "action": {"name": "modify"},
            "evaluations": [
                {"resource": w.space("issued_invoices")},
                {},
                {"resource": {"type": "space", "id": 12}},
                "not an object",
                {"resource": w.space("issued_invoices")},
            ],
        },
    )
    assert r.status_code == 200
    answers = r.json["evaluations"]
    assert len(answers) == 5
    assert [a["decision"] for a in answers] == [True, False, False, False, True]
    error = answers[1]["context"]["error"]
    assert error["status"] == 400 and error["code"] == "missing_field"
    assert "evaluations[1].resource" in error["message"]
    assert answers[2]["context"]["error"]["code"] == "invalid_field"
    assert answers[3]["context"]["error"]["code"] == "invalid_field"


def test_malformed_top_level_of_evaluations_is_a_400(world):
    w = world
    for body in (
        {"evaluations": "all"},
        {"evaluations": {"0": {}}},
        {"subject": "bob", "evaluations": [{}]},
        {"subject": {"type": 3}, "evaluations": [{}]},
        {"options": "fast", "evaluations": [{}]},
    ):
        assert w.portal.post(EVALUATIONS, json=body).status_code == 400, body


def _batch(w: World, semantic: str | None) -> dict:
    body = {
        "subject": w.user("bob"),
        "action": {"name": "modify"},
        "evaluations": [
            {"resource": w.space("issued_invoices")},  # permit
            {"resource": w.space("works_invoices", "compta")},  # deny
            {"resource": w.space("issued_invoices")},
        ],
    }  # permit
    if semantic:
        body["options"] = {"evaluations_semantic": semantic}
    r = w.portal.post(EVALUATIONS, json=body)
    assert r.status_code == 200, r.json
    return r.json


def test_execute_all_is_the_default_semantic(world):
    expected = [True, False, True]
    assert [e["decision"] for e in _batch(world, None)["evaluations"]] == expected
    assert [e["decision"] for e in _batch(world, "execute_all")["evaluations"]] == expected


def test_deny_on_first_deny_stops_after_the_first_denial(world):
    assert [e["decision"] for e in _batch(world, "deny_on_first_deny")["evaluations"]] == [
        True,
        False,
    ]


def test_permit_on_first_permit_stops_after_the_first_permit(world):
    assert [e["decision"] for e in _batch(world, "permit_on_first_permit")["evaluations"]] == [True]


def test_an_item_error_counts_as_a_denial_for_deny_on_first_deny(world):
    w = world
    r = w.portal.post(
        EVALUATIONS,
        json={
            "subject": w.user("bob"),
            "action": {"name": "modify"},
            "options": {"evaluations_semantic": "deny_on_first_deny"},
            "evaluations": [{}, {"resource": w.space("issued_invoices")}],
        },
    )
    assert len(r.json["evaluations"]) == 1
    assert r.json["evaluations"][0]["context"]["error"]["status"] == 400


def test_an_unknown_semantic_is_a_400(world):
    w = world
    r = w.portal.post(
        EVALUATIONS,
        json={
            "evaluations": [ask(w, "bob", "consult", w.space("my_account"))],
            "options": {"evaluations_semantic": "most_of_them", "another_option": 1},
        },
    )
    assert r.status_code == 400


def test_more_than_batch_max_evaluations_is_a_400(world, rt):
    w = world
    rt.settings = dataclasses.replace(rt.settings, batch_max=2)
    item = ask(w, "bob", "consult", w.space("my_account"))
    r = w.portal.post(EVALUATIONS, json={"evaluations": [item] * 3})
    assert r.status_code == 400 and r.json["code"] == "batch_too_large"
    assert w.portal.post(EVALUATIONS, json={"evaluations": [item] * 2}).status_code == 200


# --- Search ----------------------------------------------------------------------


def search(w: World, path: str, body: dict, client: Api | None = None) -> list[dict]:
    """Every result of a search, following next_token; checks each page's shape."""
    results, token = [], None
    for _ in range(100):
        page = dict(body.get("page") or {})
        if token:
            page["token"] = token
        r = (client or w.portal).post(path, json={**body, "page": page})
        assert r.status_code == 200, r.json
        assert isinstance(r.json["context"]["revision"], int)
        assert r.json["page"]["count"] == len(r.json["results"])
        results += r.json["results"]
        token = r.json["page"]["next_token"]
        if token == "":
            return results
    raise AssertionError("pagination did not end")


def test_subject_search_lists_the_users_the_native_checks_allow(world):
    w = world
    for action, resource, space, service in (
        ("consult", w.space("issued_invoices"), "issued_invoices", None),
        ("consult", w.space("works_invoices", "compta"), "works_invoices", "compta"),
        ("modify", w.space("works_invoices", "compta"), "works_invoices", "compta"),
        ("consult", w.space("my_account"), "my_account", None),
        ("attachments.create", w.structure(), None, None),
    ):
        found = search(
            w,
            SUBJECTS,
            {"subject": {"type": "user"}, "action": {"name": action}, "resource": resource},
        )
        expected = [
            {"type": "user", "id": str(w.uid(who))}
            for who in sorted(w.people, key=w.uid)
            if native(w, who, action, space, service)["allowed"]
        ]
        assert found == expected, action
    assert search(
        w,
        SUBJECTS,
        {
            "subject": {"type": "user"},
            "action": {"name": "modify"},
            "resource": w.space("works_invoices", "compta"),
        },
    ) == [w.user("carol")]


def test_resource_search_lists_the_spaces_the_native_checks_allow(world):
    w = world
    for who in ("ada", "bob", "carol", "dave"):
        for action in ("consult", "modify", "create"):
            found = search(
                w,
                RESOURCES,
                {"subject": w.user(who), "action": {"name": action}, "resource": {"type": "space"}},
            )
            for resource in found:
                parts = resource["id"].split("/")
                assert resource["type"] == "space" and int(parts[0]) == w.st
                service = parts[1] if len(parts) == 3 else None
                assert native(w, who, action, parts[-1], service)["allowed"] is True
            for space, service in (
                ("issued_invoices", None),
                ("works_invoices", "compta"),
                ("my_account", None),
                ("issued_invoices", "compta"),
            ):
                allowed = native(w, who, action, space, service)["allowed"]
                assert (w.space(space, service) in found) is allowed, (who, action, space)
    carol = [w.space("my_account", "compta"), w.space("works_invoices", "compta")]
    assert (
        search(
            w,
            RESOURCES,
            {
                "subject": w.user("carol"),
                "action": {"name": "modify"},
                "resource": {"type": "space"},
            },
        )
        == carol
    )


def test_resource_search_lists_structures_for_a_management_action(world):
    w = world
    body = {"action": {"name": "history.read"}, "resource": {"type": "structure"}}
    assert search(w, RESOURCES, {"subject": w.user("ada"), **body}) == [w.structure()]
    assert search(w, RESOURCES, {"subject": w.user("bob"), **body}) == []
    assert (
        search(
            w,
            RESOURCES,
            {
                "subject": w.user("bob"),
                "action": {"name": "consult"},
                "resource": {"type": "structure"},
            },
        )
        == []
    )


def test_action_search_lists_the_actions_the_native_checks_allow(world, rt):
    w = world
    for who in ("ada", "bob", "carol"):
        on_space = search(
            w, ACTIONS, {"subject": w.user(who), "resource": w.space("works_invoices", "compta")}
        )
        assert on_space == [
            {"name": a}
            for a in ("consult", "modify", "create")
            if native(w, who, a, "works_invoices", "compta")["allowed"]
        ]
        on_structure = search(w, ACTIONS, {"subject": w.user(who), "resource": w.structure()})
        assert on_structure == [
            {"name": a} for a in rt.policies.actions if native(w, who, a, None, None)["allowed"]
        ]
    assert search(w, ACTIONS, {"subject": w.user("bob"), "resource": w.structure()}) == [
        {"name": "structure.view"}
    ]


def test_search_pages_with_next_token_return_every_result_once(world, rt):
    w = world
    body = {"subject": w.user("ada"), "resource": w.structure(), "page": {"limit": 4}}
    first = w.portal.post(ACTIONS, json=body).json
    assert first["page"]["count"] == 4 and first["page"]["next_token"]
    everything = search(w, ACTIONS, body)
    assert everything == [{"name": a} for a in rt.policies.actions]  # the principal: all 15
    assert len(everything) == 15
    one_by_one = search(
        w,
        RESOURCES,
        {
            "subject": w.user("ada"),
            "action": {"name": "consult"},
            "resource": {"type": "space"},
            "page": {"limit": 1},
        },
    )
    assert one_by_one == search(
        w,
        RESOURCES,
        {"subject": w.user("ada"), "action": {"name": "consult"}, "resource": {"type": "space"}},
    )
    assert len(one_by_one) > 3 and len({r["id"] for r in one_by_one}) == len(one_by_one)


def test_the_last_page_has_an_empty_next_token(world):
    w = world
    r = w.portal.post(
        ACTIONS, json={"subject": w.user("bob"), "resource": w.structure(), "page": {"limit": 1}}
    )
    assert r.json["results"] == [{"name": "structure.view"}]
    assert r.json["page"]["next_token"] == ""


def test_page_limit_defaults_and_is_capped(world, rt):
    w = world
    rt.settings = dataclasses.replace(rt.settings, page_size=5, page_size_max=7)
    body = {"subject": w.user("ada"), "resource": w.structure()}
    assert w.portal.post(ACTIONS, json=body).json["page"]["count"] == 5
    capped = w.portal.post(ACTIONS, json={**body, "page": {"limit": 10_000}}).json
    assert capped["page"]["count"] == 7 and capped["page"]["next_token"]
    assert len(search(w, ACTIONS, {**body, "page": {"limit": 10_000}})) == 15


def test_a_zero_limit_returns_no_result_but_says_whether_there_are_some(world):
    w = world
    body = {"subject": w.user("ada"), "resource": w.structure(), "page": {"limit": 0}}
    r = w.portal.post(ACTIONS, json=body).json
    assert r["results"] == [] and r["page"]["next_token"]
    nothing = w.portal.post(ACTIONS, json={**body, "subject": w.user("dave")}).json
    assert nothing["results"] == [] and nothing["page"]["next_token"] == ""


def test_a_page_token_resumes_after_the_policy_revision_moved(world, rt):
    w = world
    body = {
        "subject": {"type": "user"},
        "action": {"name": "consult"},
        "resource": w.space("my_account"),
        "page": {"limit": 1},
    }
    first = w.portal.post(SUBJECTS, json=body).json
    assert first["results"] == [w.user("ada")] and first["page"]["next_token"]
    grant(rt, w.uid("dave"), w.st)  # my_account comes with the simple role
    rest = search(w, SUBJECTS, {**body, "page": {"limit": 1, "token": first["page"]["next_token"]}})
    assert rest == [w.user("bob"), w.user("dave")]


def test_a_page_token_is_refused_with_another_request_or_when_forged(world):
    w = world
    body = {"subject": w.user("ada"), "resource": w.structure(), "page": {"limit": 2}}
    token = w.portal.post(ACTIONS, json=body).json["page"]["next_token"]
    changed = w.portal.post(ACTIONS, json={**body, "page": {"limit": 3, "token": token}})
    assert changed.status_code == 400 and changed.json["code"] == "page_token_mismatch"
    other = w.portal.post(
        ACTIONS, json={**body, "subject": w.user("bob"), "page": {"limit": 2, "token": token}}
    )
    assert other.status_code == 400 and other.json["code"] == "page_token_mismatch"
    same = {**body, "page": {"limit": 2, "token": "x"}}
    forged_key = wire.encode_token(["consult"], wire.fingerprint(same))
    for bad in ("garbage!!", "e30", forged_key):
        r = w.portal.post(ACTIONS, json={**body, "page": {"limit": 2, "token": bad}})
        assert r.status_code == 400 and r.json["code"] == "invalid_page_token", bad


@pytest.mark.parametrize(
    "page", [{"limit": -1}, {"limit": "2"}, {"limit": 1.5}, {"token": 5}, "next"]
)
def test_a_malformed_page_is_a_400(world, page):
    w = world
    r = w.portal.post(
        ACTIONS, json={"subject": w.user("ada"), "resource": w.structure(), "page": page}
    )
    assert r.status_code == 400


def test_page_properties_and_unknown_page_members_are_ignored(world):
    w = world
    r = w.portal.post(
        ACTIONS,
        json={
            "subject": w.user("bob"),
            "resource": w.structure(),
            "page": {"properties": {"sort": "name"}, "cursor": 1},
        },
    )
    assert r.status_code == 200 and r.json["results"] == [{"name": "structure.view"}]


def fill(value, w: World):
    """`value` with "{st}" and "{ada}" replaced by the world's ids."""
    if isinstance(value, dict):
        return {k: fill(v, w) for k, v in value.items()}
    if isinstance(value, str):
        return value.replace("{st}", str(w.st)).replace("{ada}", str(w.uid("ada")))
    return value


@pytest.mark.parametrize(
    "path, body",
    [
        (
            SUBJECTS,
            {
                "subject": {"type": "spaceship"},
                "action": {"name": "consult"},
                "resource": {"type": "space", "id": "{st}/my_account"},
            },
        ),
        (
            SUBJECTS,
            {
                "subject": {"type": "user"},
                "action": {"name": "read"},
                "resource": {"type": "space", "id": "{st}/my_account"},
            },
        ),
        (
            SUBJECTS,
            {
                "subject": {"type": "user"},
                "action": {"name": "consult"},
                "resource": {"type": "record", "id": "record-1"},
            },
        ),
        (
            SUBJECTS,
            {
                "subject": {"type": "user"},
                "action": {"name": "consult"},
                "resource": {"type": "space", "id": "424242/my_account"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "spaceship", "id": "x"},
                "action": {"name": "consult"},
                "resource": {"type": "space"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "user", "id": "nonexistent-user"},
                "action": {"name": "consult"},
                "resource": {"type": "space"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "user", "id": "{ada}"},
                "action": {"name": "consult"},
                "resource": {"type": "record"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "user", "id": "{ada}"},
                "action": {"name": "read"},
                "resource": {"type": "space"},
            },
        ),
        (
            ACTIONS,
            {
                "subject": {"type": "user", "id": "nonexistent-user"},
                "resource": {"type": "space", "id": "{st}/my_account"},
            },
        ),
        (
            ACTIONS,
            {
                "subject": {"type": "user", "id": "99999999"},
                "resource": {"type": "space", "id": "{st}/my_account"},
            },
        ),
        (
            ACTIONS,
            {
                "subject": {"type": "user", "id": "{ada}"},
                "resource": {"type": "record", "id": "record-1"},
            },
        ),
        (
            ACTIONS,
            {
                "subject": {"type": "user", "id": "{ada}"},
                "resource": {"type": "space", "id": "{st}/no_such_space"},
            },
        ),
    ],
)
def test_unknown_types_and_ids_give_empty_results(world, path, body):
    w = world
    r = w.portal.post(path, json=fill(body, w))
    assert r.status_code == 200, r.json
    assert r.json["results"] == [] and r.json["page"]["next_token"] == ""


@pytest.mark.parametrize(
    "path, body",
    [
        (SUBJECTS, {"subject": {"type": "user"}, "resource": {"type": "space", "id": "1/x"}}),
        (
            SUBJECTS,
            {
                "subject": {"type": "user"},
                "action": {"name": "consult"},
                "resource": {"type": "space"},
            },
        ),
        (
            SUBJECTS,
            {
                "subject": {},
                "action": {"name": "consult"},
                "resource": {"type": "space", "id": "1/x"},
            },
        ),
        (RESOURCES, {"action": {"name": "consult"}, "resource": {"type": "space"}}),
        (
            RESOURCES,
            {
                "subject": {"type": "user"},
                "action": {"name": "consult"},
                "resource": {"type": "space"},
            },
        ),
        (
            RESOURCES,
            {
                "subject": {"type": "user", "id": "1"},
                "action": {"name": "consult"},
                "resource": {"id": "1/x"},
            },
        ),
        (ACTIONS, {"subject": {"type": "user", "id": "1"}}),
        (ACTIONS, {"resource": {"type": "structure", "id": "1"}}),
        (
            ACTIONS,
            {"subject": {"type": "user", "id": 1}, "resource": {"type": "structure", "id": "1"}},
        ),
    ],
)
def test_a_search_missing_a_required_field_is_a_400(world, path, body):
    r = world.portal.post(path, json=body)
    assert r.status_code == 400 and r.content_type == "application/problem+json"


def test_the_id_of_the_searched_entity_is_ignored(world):
    w = world
    with_id = search(
        w,
        SUBJECTS,
        {
            "subject": {"type": "user", "id": "anyone"},
            "action": {"name": "modify"},
            "resource": w.space("issued_invoices"),
        },
    )
    assert with_id == [w.user("bob")]
    resources = search(
        w,
        RESOURCES,
        {
            "subject": w.user("carol"),
            "action": {"name": "modify"},
            "resource": {"type": "space", "id": "1/whatever"},
        },
    )
    assert resources == [w.space("my_account", "compta"), w.space("works_invoices", "compta")]
    ignored_action = search(
        w,
        ACTIONS,
        {"subject": w.user("bob"), "resource": w.structure(), "action": {"name": "ignored"}},
    )
    assert ignored_action == [{"name": "structure.view"}]


def test_searches_accept_a_context(world):
    w = world
    assert search(
        w,
        ACTIONS,
        {
            "subject": w.user("bob"),
            "resource": w.structure(),
            "context": {"time": "2024-10-26T01:22-07:00"},
        },
    ) == [{"name": "structure.view"}]


# --- Discovery -------------------------------------------------------------------


def test_discovery_document_names_every_endpoint_under_the_public_base_url(api, rt):
    rt.settings = dataclasses.replace(rt.settings, public_base_url="https://pdp.example.com/")
    r = api.get("/.well-known/authzen-configuration")
    assert r.status_code == 200 and r.content_type == "application/json"
    assert r.json == {
        "policy_decision_point": "https://pdp.example.com",
        "access_evaluation_endpoint": "https://pdp.example.com/access/v1/evaluation",
        "access_evaluations_endpoint": "https://pdp.example.com/access/v1/evaluations",
        "search_subject_endpoint": "https://pdp.example.com/access/v1/search/subject",
        "search_resource_endpoint": "https://pdp.example.com/access/v1/search/resource",
        "search_action_endpoint": "https://pdp.example.com/access/v1/search/action",
    }
    assert "max-age" in r.headers["Cache-Control"]


def test_discovery_is_public_and_its_endpoints_are_served(api, world):
    doc = api.get("/.well-known/authzen-configuration", headers={"Authorization": "Bearer made-up"})
    assert doc.status_code == 200
    assert doc.json["policy_decision_point"] == "http://authz.test"
    for name, url in doc.json.items():
        if name.endswith("_endpoint"):
            path = url.removeprefix("http://authz.test")
            assert world.portal.post(path, json={}).status_code == 400  # served, and strict


def test_the_openapi_document_describes_the_authzen_routes(api):
    paths = api.get("/openapi.json").json["paths"]
    for path in [*POST_ROUTES]:
        assert "post" in paths[path]
    assert "get" in paths["/.well-known/authzen-configuration"]
