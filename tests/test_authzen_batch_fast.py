"""POST /access/v1/evaluations reads and writes its items on fast paths
(issue 13): each must give exactly what the general path gives — the same
loads and errors for the evaluations list (SafeJsonList against a plain List
of Raw with safe_json), the same Ask for every item (wire.evaluations against
evaluation(with_defaults(...)) item by item), and the same written decision
(wire.decision against Decision.as_dict)."""

from __future__ import annotations

import json

import pytest
from marshmallow import Schema, ValidationError, fields

from api.authzen import wire
from api.schemas import fields as f
from api.schemas.authzen import AuthzenEvaluationsSchema
from authz.engine.decisions import Decision
from authz.errors import Invalid
from tests.support.rows import key_headers

MANAGEMENT = {"structure.view", "users.manage"}

SUBJECT = {"type": "user", "id": "42"}
SPACE = {"type": "space", "id": "12/issued_invoices"}
ACTION = {"name": "consult"}

ITEMS = [
    {"subject": SUBJECT, "action": ACTION, "resource": SPACE},
    {
        "subject": SUBJECT,
        "action": {"name": "users.manage"},
        "resource": {"type": "structure", "id": "12"},
    },
    {
        "subject": SUBJECT,
        "action": ACTION,
        "resource": {"type": "space", "id": "12/compta/works_invoices"},
    },
    {"subject": {"type": "user", "id": "042"}, "action": ACTION, "resource": SPACE},
    {"subject": {"type": "user", "id": "99999999999"}, "action": ACTION, "resource": SPACE},
    {"subject": {"type": "group", "id": "42"}, "action": ACTION, "resource": SPACE},
    {"subject": SUBJECT, "action": {"name": "fly"}, "resource": SPACE},
    {"subject": SUBJECT, "action": ACTION, "resource": {"type": "space", "id": "12"}},
    {"subject": SUBJECT, "action": ACTION, "resource": {"type": "space", "id": "x/y"}},
    {"subject": SUBJECT, "action": ACTION, "resource": {"type": "file", "id": "12"}},
    {"subject": {**SUBJECT, "properties": {"a": 1}}, "action": ACTION, "resource": SPACE},
    {"subject": {**SUBJECT, "properties": None}, "action": ACTION, "resource": SPACE},
    {"subject": {**SUBJECT, "properties": 3}, "action": ACTION, "resource": SPACE},
    {"subject": {**SUBJECT, "extra": None}, "action": ACTION, "resource": SPACE},
    {"subject": SUBJECT, "action": ACTION, "resource": SPACE, "context": {"explain": True}},
    {"subject": SUBJECT, "action": ACTION, "resource": SPACE, "context": {"explain": "yes"}},
    {"subject": SUBJECT, "action": ACTION, "resource": SPACE, "context": None},
    {"subject": SUBJECT, "action": ACTION, "resource": SPACE, "context": {"at_least_revision": 7}},
    {"action": ACTION, "resource": SPACE},
    {"subject": {"type": "user"}, "action": ACTION, "resource": SPACE},
    {"subject": {"type": "user", "id": 42}, "action": ACTION, "resource": SPACE},
    {"subject": SUBJECT, "action": {}, "resource": SPACE},
    {"subject": SUBJECT, "action": ACTION},
    {"subject": "42", "action": ACTION, "resource": SPACE},
    {"subject": SUBJECT, "action": ACTION, "resource": SPACE, "extra": [1]},
    None,
    [],
    "x",
]

DEFAULTS = [
    {},
    {"subject": SUBJECT},
    {"subject": {"type": "user"}, "resource": {"id": "12/my_account"}},
    {"action": {"name": "modify"}, "context": {"at_least_revision": 3, "explain": True}},
    {"context": {}},
]


def as_before(request):
    """The items as evaluations() read them before its fast path: each through
    with_defaults then evaluation, with the top-level defaults checked."""
    defaults = {
        key: None
        if request.get(key) is None
        else wire.entity(request[key], key, required, partial=True)
        for key, required in (
            ("subject", wire.SUBJECT_KEYS),
            ("action", wire.ACTION_KEYS),
            ("resource", wire.RESOURCE_KEYS),
        )
    }
    defaults["context"] = wire.context_of(request.get("context")) or None
    out = []
    for i, item in enumerate(request["evaluations"]):
        path = f"evaluations[{i}]."
        try:
            out.append(wire.evaluation(wire.with_defaults(item, defaults, path), MANAGEMENT, path))
        except Invalid as error:
            out.append(error)
    return out


def comparable(parsed):
    return [
        ("invalid", p.code, p.detail, p.extra) if isinstance(p, Invalid) else ("ask", p)
        for p in parsed
    ]


@pytest.mark.parametrize("defaults", DEFAULTS, ids=[str(i) for i in range(len(DEFAULTS))])
def test_every_item_is_read_as_by_the_general_path(defaults):
    request = {**defaults, "evaluations": ITEMS}
    fast = wire.evaluations(request, MANAGEMENT, 1000)
    assert comparable(fast.items) == comparable(as_before(request))
    asks = [p for p in fast.items if not isinstance(p, Invalid)]
    assert len(asks) >= 10 and any(a.question is not None for a in asks)
    wanted = [a.at_least for a in asks if a.at_least is not None]
    top = (defaults.get("context") or {}).get("at_least_revision")
    assert fast.at_least == max([*wanted, *([top] if top is not None else [])], default=None)


class PlainEvaluations(Schema):
    evaluations = fields.List(fields.Raw(allow_none=True, validate=f.safe_json))


LISTS = [
    ITEMS,
    [SUBJECT, None, 1, 2.5, True, "text", [["deep", {"k": "v"}]]],
    [{"subject": {"type": "user", "id": "4\x002"}}],
    [ITEMS[0], {"context": {"note": "\ud800"}}, ITEMS[1], {"bad\x00key": 1}],
    [{"k": ["a", {"b": ["\udfff"]}]}],
    [],
    "not a list",
    {"a": 1},
]


@pytest.mark.parametrize("items", LISTS, ids=[str(i) for i in range(len(LISTS))])
def test_the_evaluations_list_loads_and_refuses_as_a_plain_list(items):
    field = AuthzenEvaluationsSchema().fields["evaluations"]
    plain = PlainEvaluations().fields["evaluations"]

    def outcome(load):
        try:
            return "ok", load(items)
        except ValidationError as exc:
            return "error", exc.messages, exc.valid_data

    assert outcome(field.deserialize) == outcome(plain.deserialize)


def test_all_safe_json_says_no_exactly_where_safe_json_refuses():
    for value in [*LISTS, *ITEMS, "\x00", ["ok", "\ud800"], {"\x00": 1}, {1: "x"}]:
        try:
            f.safe_json(value)
            refused = False
        except ValidationError:
            refused = True
        assert f.all_safe_json(value, set()) is not refused, value


DECISIONS = [
    Decision(True, 7, rule="role:principal users.manage", policy_version=2),
    Decision(False, 7, reason="no role", policy_version=None),
    Decision(True, 7, rule="r", explanation={"facts": {"a": 1}}),
    Decision(False, 8, reason="x", explanation={"facts": {}}, policy_version=1),
]


@pytest.mark.parametrize("decision", DECISIONS, ids=[str(i) for i in range(len(DECISIONS))])
def test_a_decision_is_written_as_before(decision):
    context = decision.as_dict(explain=True)
    before = {"decision": context.pop("allowed"), "context": context}
    written = wire.decision(decision)
    assert written == before
    assert list(written["context"]) == list(before["context"])  # the same key order


def test_decisions_writes_each_answer_in_order_and_a_shared_one_once():
    error = Invalid("evaluations[1].subject: Missing", code="missing_field")
    answers = [DECISIONS[1], error, DECISIONS[0], DECISIONS[1]]
    written = wire.decisions(answers)
    assert written == [wire.decision(a) for a in answers]
    assert written[0] is written[3]


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
def test_an_escaped_nul_or_surrogate_in_a_batch_is_still_refused(api, rt, bad):
    """A body with a `\\u` escape is searched (api/inputs.py,
    body_without_escapes): the problem document names the item, as before."""
    items = [ITEMS[0], {**ITEMS[0], "context": {"note": bad}}, ITEMS[1]]
    r = api.post("/access/v1/evaluations", headers=key_headers(rt), json={"evaluations": items})
    assert r.status_code == 400 and r.content_type == "application/problem+json"
    try:
        PlainEvaluations().load({"evaluations": items})
    except ValidationError as exc:
        expected = json.loads(json.dumps(exc.messages))
    assert r.json["errors"] == expected and "1" in expected["evaluations"]


def test_a_batch_without_escapes_is_answered_item_by_item(api, rt):
    items = [ITEMS[0], ITEMS[5], {"subject": SUBJECT}, ITEMS[0]]
    r = api.post("/access/v1/evaluations", headers=key_headers(rt), json={"evaluations": items})
    assert r.status_code == 200
    answers = r.json["evaluations"]
    assert [a["decision"] for a in answers] == [False] * 4
    assert answers[2]["context"]["error"]["code"] == "missing_field"
    assert answers[0] == answers[3]
    assert answers[1]["context"]["reason"] == "unknown subject type 'group': expected 'user'"
