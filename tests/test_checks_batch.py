"""The batch route's hand-written item check agrees with QuestionSchema."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from api.schemas import QuestionItem, QuestionSchema
from authz.workflows import clients

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
