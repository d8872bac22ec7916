"""A sole principal can use the invoice spaces (issue 15): the only manager of a
structure validates their own subscription request, since nobody else could;
as soon as another manager exists, their own request is someone else's to
decide (docs/decisions.md, "A sole manager validates their own subscriptions").
"""

from __future__ import annotations

from tests.support.api import attach_directly, create_structure
from tests.support.membership import (
    SUB,
    allowed,
    ask_subscription,
    history,
    next_siret,
    person,
    process,
)
from tests.support.rows import revision


def test_a_structure_made_by_sign_up_is_usable_end_to_end_by_its_sole_principal(api, rt):
    """Sign up, create a structure, ask for issued invoices, validate it oneself:
    a check allows creating an invoice, and the history says who decided and why."""
    solo = person(api, "solo@entreprise.example", "Sacha", "Seul")
    st = create_structure(solo, next_siret(), "Sacha Seul EI")
    assert not allowed(solo, st["id"], "issued_invoices", "create")

    asked = ask_subscription(solo, st["id"], ("issued_invoices", None, "modify"))
    done = process(solo, "subscription", asked["id"], "validation")
    assert done.status_code == 200, done.json
    assert done.json["status"] == "validated"
    assert done.json["processed_by_id"] == solo.user["id"]

    assert allowed(solo, st["id"], "issued_invoices", "create", at=revision(rt))
    assert allowed(solo, st["id"], "issued_invoices", "consult")
    entry = history(solo, st["id"], action="subscription_request.self_validated")
    assert len(entry) == 1
    assert entry[0]["comment"] == "Validated by the sole manager"
    assert entry[0]["actor_id"] == entry[0]["target_user_id"] == solo.user["id"]
    detail = solo.get(f"/v1/history/{entry[0]['id']}").json
    assert detail["after"]["sole_manager"] is True


def test_a_sole_manager_validates_their_own_request_in_bulk_too(api, rt):
    solo = person(api, "solo.bulk@entreprise.example")
    st = create_structure(solo, next_siret(), "Bulk EI")
    asked = ask_subscription(solo, st["id"], ("issued_invoices", None, "consult"))
    r = solo.post(f"{SUB}/validations", json={"ids": [asked["id"]]})
    assert r.json["results"] == [{"id": asked["id"], "ok": True, "code": None, "detail": None}]
    assert allowed(solo, st["id"], "issued_invoices", "consult", at=revision(rt))


def test_with_another_manager_nobody_validates_their_own_request(api, rt):
    """Once a secondary manager exists, the principal's own request is theirs
    to decide (403 own_request), and the other way round."""
    claire = person(api, "claire@duo.example")
    st = create_structure(claire, next_siret(), "Duo SARL")
    paul = person(api, "paul@duo.example")
    attach_directly(claire, st["id"], paul.user["login_email"], role="secondary")

    mine = ask_subscription(claire, st["id"], ("issued_invoices", None, "modify"))
    refused = process(claire, "subscription", mine["id"], "validation")
    assert refused.status_code == 403
    assert refused.json["code"] == "own_request"
    assert "another manager" in refused.json["detail"]
    bulk = claire.post(f"{SUB}/validations", json={"ids": [mine["id"]]}).json["results"]
    assert bulk[0]["code"] == "own_request"
    assert not allowed(claire, st["id"], "issued_invoices", "create", at=revision(rt))

    assert process(paul, "subscription", mine["id"], "validation").status_code == 200
    assert allowed(claire, st["id"], "issued_invoices", "create", at=revision(rt))
    assert history(claire, st["id"], action="subscription_request.self_validated") == []

    his = ask_subscription(paul, st["id"], ("issued_invoices", None, "consult"))
    assert process(paul, "subscription", his["id"], "validation").json["code"] == "own_request"


def test_a_sole_manager_still_does_not_refuse_their_own_request(api):
    """Self-validation is the only exception: refusing one's own request is
    not a decision anyone needs (the request simply stays pending)."""
    solo = person(api, "solo.refuse@entreprise.example")
    st = create_structure(solo, next_siret(), "Refus EI")
    asked = ask_subscription(solo, st["id"], ("issued_invoices", None, "consult"))
    r = process(solo, "subscription", asked["id"], "refusal")
    assert r.status_code == 403
    assert r.json["code"] == "own_request"


def test_a_simple_user_never_validates_their_own_request(api, rt):
    """Being the only active member is not being the sole manager: a simple
    user never processes requests, their own included."""
    claire = person(api, "claire@seule.example")
    st = create_structure(claire, next_siret(), "Seule SARL")
    lucie = person(api, "lucie@seule.example")
    attach_directly(claire, st["id"], lucie.user["login_email"])
    asked = ask_subscription(lucie, st["id"], ("issued_invoices", None, "consult"))
    r = process(lucie, "subscription", asked["id"], "validation")
    assert r.status_code == 403
    assert r.json["code"] == "action_not_allowed"
