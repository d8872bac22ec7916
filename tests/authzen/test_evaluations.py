"""The AuthZEN Evaluations API (POST /access/v1/evaluations, docs/authzen.md):
many evaluations in one request, defaults and overrides, and the evaluation
semantics of the AuthZEN 1.0 certification scenario (Batch).
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.authzen import (
    EVALUATIONS,
    World,
    ask,
)


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
