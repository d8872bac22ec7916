"""Who may call the AuthZEN API (docs/authzen.md): an API key or a token is
required; a person asks about themself only; only client applications list
subjects.
"""

from __future__ import annotations

import pytest

from tests.support.authzen import (
    ACTIONS,
    EVALUATION,
    EVALUATIONS,
    POST_ROUTES,
    RESOURCES,
    SUBJECTS,
    ask,
)


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
