"""The batch route's hand-written item check agrees with QuestionSchema."""

from __future__ import annotations

import json

import pytest
from marshmallow import Schema, ValidationError, fields, validate

from api.schemas import BatchSchema, CheckSchema, DecisionSchema, QuestionItem, QuestionSchema
from authz.engine.decisions import Decision
from authz.review.fixtures import load_world
from authz.workflows import clients
from models import ID_MAX

ITEMS = [
    {"user_id": 1, "structure_id": 2, "action": "consult"},
    {
        "user_id": 1,
        "structure_id": 2,
        "space": "issued_invoices",
        "action": "create",
        "service": "S1",
    },
    {"user_id": 1, "structure_id": 2, "space": None, "service": None, "action": "x"},
    {"user_id": 0, "structure_id": 2, "action": "consult"},
    {"user_id": -3, "structure_id": 2, "action": "consult"},
    {"user_id": "1", "structure_id": 2, "action": "consult"},
    {"user_id": 1.5, "structure_id": 2, "action": "consult"},
    {"user_id": True, "structure_id": 2, "action": "consult"},
    {"structure_id": 2, "action": "consult"},
    {"user_id": 1, "action": "consult"},
    {"user_id": 1, "structure_id": 2},
    {"user_id": 1, "structure_id": 2, "action": ""},
    {"user_id": 1, "structure_id": 2, "action": "a" * 65},
    {"user_id": 1, "structure_id": 2, "action": 7},
    {"user_id": 1, "structure_id": 2, "action": "consult", "space": ""},
    {"user_id": 1, "structure_id": 2, "action": "consult", "service": ["S1"]},
    {"user_id": 1, "structure_id": 2, "action": "consult", "extra": 1},
    {"user_id": None, "structure_id": 2, "action": "consult"},
]


def outcome(load, item):
    try:
        return "ok", load(item)
    except ValidationError as exc:
        return "error", sorted(exc.messages)


@pytest.mark.parametrize("item", ITEMS, ids=[str(i) for i in range(len(ITEMS))])
def test_batch_items_are_checked_exactly_as_single_checks(item):
    fast = outcome(lambda v: QuestionItem().deserialize(v), item)
    slow = outcome(QuestionSchema().load, item)
    assert fast[0] == slow[0]
    if fast[0] == "ok":
        assert fast[1] == {"space": None, "service": None, **slow[1]}
    else:
        assert fast[1] == slow[1]  # the same fields are refused


def test_a_bad_item_is_a_422_naming_its_index(api, rt):
    with rt.sessions() as s:
        _, key = clients.create_client(s, rt, "portal")
    r = api.post(
        "/v1/checks/batch",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "checks": [
                {"user_id": 1, "structure_id": 1, "action": "consult"},
                {"user_id": "x", "structure_id": 1, "action": "consult"},
            ]
        },
    )
    assert r.status_code == 422 and r.content_type == "application/problem+json"
    assert r.json["errors"]["checks"] == {"1": {"user_id": ["Must be an integer of at least 1."]}}


# The batch's list (QuestionList) reads the common item inline and hands any
# other to QuestionItem: the same loads and the same errors as a plain
# marshmallow List of QuestionItem, on valid and invalid batches.
class PlainBatch(Schema):
    checks = fields.List(QuestionItem(), required=True, validate=validate.Length(min=1))
    at_least_revision = fields.Integer(validate=validate.Range(min=0))
    explain = fields.Boolean(load_default=False)


BATCHES = [
    [ITEMS[0], ITEMS[1], ITEMS[2]],
    [ITEMS[1]] * 3,
    [{"user_id": ID_MAX, "structure_id": 1, "action": "a" * 64, "space": "s", "service": "v"}],
    [{"user_id": ID_MAX + 1, "structure_id": 1, "action": "consult"}],
    [{"user_id": 1, "structure_id": 1, "action": "con\nsult"}],
    [{"user_id": 1, "structure_id": 1, "action": "consult", "space": "x\x00"}],
    [ITEMS[0], None, ITEMS[1]],
    [ITEMS[0], [], "x", 3],
    *([ITEMS[0], bad, ITEMS[1], bad] for bad in ITEMS[3:]),
    [],
    "not a list",
    None,
]


@pytest.mark.parametrize("checks", BATCHES, ids=[str(i) for i in range(len(BATCHES))])
def test_batch_list_loads_and_refuses_as_the_plain_list(checks):
    body = {"checks": checks, "explain": True}
    fast = outcome(BatchSchema().load, body)
    plain = outcome(PlainBatch().load, body)
    if fast[0] == "error":  # sorted() of a dict keeps its keys: compare the messages
        fast = ("error", outcome_messages(BatchSchema().load, body))
        plain = ("error", outcome_messages(PlainBatch().load, body))
    assert fast == plain


def outcome_messages(load, body):
    try:
        load(body)
    except ValidationError as exc:
        return exc.messages, exc.valid_data
    raise AssertionError("loaded")


def test_a_batch_with_a_bad_item_is_the_same_problem_document_as_before(api, rt):
    with rt.sessions() as s:
        _, key = clients.create_client(s, rt, "portal")
    checks = [ITEMS[0], {"user_id": 0, "structure_id": "2", "action": ""}, ITEMS[1], None]
    r = api.post(
        "/v1/checks/batch", headers={"Authorization": f"Bearer {key}"}, json={"checks": checks}
    )
    assert r.status_code == 422 and r.content_type == "application/problem+json"
    try:
        PlainBatch().load({"checks": checks})
    except ValidationError as exc:
        expected = json.loads(json.dumps(exc.messages))  # integer keys as JSON writes them
    assert r.json["errors"] == expected


def test_batch_answers_are_the_single_checks_answers(api, rt):
    with rt.sessions() as s:
        ids = load_world(
            s,
            {
                "structures": {"acme": {"kind": "private"}},
                "users": {"ann": {"status": "active"}},
                "attachments": [{"user": "ann", "structure": "acme", "role": "simple"}],
            },
        )
        s.commit()
        _, key = clients.create_client(s, rt, "portal")
    user, structure = ids.users["ann"], ids.structures["acme"]
    checks = [
        {"user_id": user, "structure_id": structure, "space": space, "action": action}
        for space in ("my_account", "issued_invoices", None)
        for action in ("consult", "modify", "structure.view", "users.manage")
    ] * 2
    headers = {"Authorization": f"Bearer {key}"}
    for explain in (False, True):
        batch = api.post(
            "/v1/checks/batch", headers=headers, json={"checks": checks, "explain": explain}
        )
        assert batch.status_code == 200
        singles = [
            api.post("/v1/checks", headers=headers, json={**c, "explain": explain}).json
            for c in checks
        ]
        assert batch.json["decisions"] == singles
        assert any(d["allowed"] for d in singles) and not all(d["allowed"] for d in singles)


# A single check's body (CheckSchema.load) and its answer (DecisionSchema.dump)
# skip marshmallow's field machinery when they are exactly valid: the same
# loads, dumps and errors as marshmallow's own.
BODIES = [
    *ITEMS,
    {"user_id": 1, "structure_id": 2, "action": "consult", "explain": True},
    {"user_id": 1, "structure_id": 2, "action": "consult", "at_least_revision": 0},
    {"user_id": 1, "structure_id": 2, "action": "consult", "at_least_revision": 7},
    {"user_id": 1, "structure_id": 2, "action": "consult", "at_least_revision": -1},
    {"user_id": 1, "structure_id": 2, "action": "consult", "at_least_revision": "7"},
    {"user_id": 1, "structure_id": 2, "action": "consult", "at_least_revision": None},
    {"user_id": 1, "structure_id": 2, "action": "consult", "at_least_revision": True},
    {"user_id": 1, "structure_id": 2, "action": "consult", "explain": "true"},
    {"user_id": 1, "structure_id": 2, "action": "consult", "explain": None},
    {"user_id": 1, "structure_id": 2, "action": "consult", "explain": 1},
    {"user_id": ID_MAX, "structure_id": ID_MAX + 1, "action": "consult"},
    {"user_id": 1, "structure_id": 2, "action": "consult\u202e"},
    [],
    "text",
    None,
]


@pytest.mark.parametrize("body", BODIES, ids=[str(i) for i in range(len(BODIES))])
def test_a_single_check_loads_and_refuses_as_marshmallow_does(body):
    schema = CheckSchema()
    fast = outcome(schema.load, body)
    slow = outcome(lambda b: Schema.load(schema, b), body)
    assert fast == slow


ANSWERS = [
    Decision(True, 4, rule="role:principal", policy_version=2).as_dict(),
    Decision(False, 4, reason="no validated attachment").as_dict(),
    Decision(False, 4).as_dict(),
    Decision(True, 4, rule="r", explanation={"role": "principal", "levels": [1]}).as_dict(
        explain=True
    ),
    {"allowed": 1, "revision": "5", "rule": 7},
    {"allowed": True, "revision": 5, "policy_version": None, "reason": None},
    {"allowed": True, "revision": 5, "extra": 1},
    Decision(True, 4, rule="r"),
]


@pytest.mark.parametrize("answer", ANSWERS, ids=[str(i) for i in range(len(ANSWERS))])
def test_a_decision_is_written_as_marshmallow_writes_it(answer):
    schema = DecisionSchema()
    fast = schema.dump(answer)
    slow = Schema.dump(schema, answer)
    assert fast == slow
    assert list(fast) == list(slow)  # and in the same order
