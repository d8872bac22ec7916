"""A service is named by its id or by its code wherever the management API
takes one (issue 15), the code resolved within the structure at hand, case
ignored: another structure's code is as unknown as an unknown id. Codes are
unique per structure whatever their case (`ATELIER` and `atelier` cannot
coexist), in the workflow and in the database (migration 0010)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from models import Service
from tests.support.membership import (
    ATT,
    SUB,
    Bakery,
    allowed,
    ask_attachment,
    ask_subscription,
    attached,
    check,
    login_of,
    person,
    process,
)
from tests.support.rows import revision


def other_structure_with(api, structure_of, code: str) -> int:
    """Another structure, not the bakery, that has a service `code`."""
    owner = person(api, "autre.gerant@login.example")
    other = structure_of(owner, "Autre Boulangerie")
    made = owner.post(
        f"/v1/structures/{other['id']}/services", json={"code": code, "label": "Livraison"}
    )
    assert made.status_code == 201, made.json
    return made.json["id"]


def test_every_body_that_names_a_service_takes_its_code_whatever_its_case(api, bakery: Bakery):
    claire, sid, ids = bakery.claire, bakery.id, bakery.services
    # an attachment request, then its validation with a code and an id mixed
    julien = person(api, "julien@login.example")
    asked = ask_attachment(julien, sid, service_ids=["atelier"])
    assert asked["service_ids"] == [ids["ATELIER"]]
    done = process(
        claire,
        "attachment",
        asked["id"],
        "validation",
        whole_structure=False,
        service_ids=["Boutique", ids["ATELIER"]],
    )
    assert done.status_code == 200, done.json
    assert sorted(done.json["attachment"]["service_ids"]) == sorted(
        [ids["ATELIER"], ids["BOUTIQUE"]]
    )
    # a subscription request's line
    line = {"space": "works_invoices", "service_id": "ATELIER", "level": "consult"}
    sub = julien.post(SUB, json={"structure_id": sid, "lines": [line]})
    assert sub.status_code == 201, sub.json
    assert sub.json["lines"][0]["service_id"] == ids["ATELIER"]
    # services added to a member
    lucie = attached(api, bakery, "lucie@login.example", services=["ATELIER"])
    added = claire.post(
        f"/v1/structures/{sid}/users/{lucie.user['id']}/services",
        json={"service_ids": ["boutique"]},
    )
    assert added.status_code == 200, added.json
    assert {a["service_code"] for a in added.json["attachments"]} >= {"ATELIER", "BOUTIQUE"}
    # a direct attachment (an active account: an invitation)
    paul = person(api, "paul@login.example")
    invited = claire.post(
        f"/v1/structures/{sid}/attachments",
        json={"login_email": login_of(paul), "whole_structure": False, "service_ids": ["BOUTIQUE"]},
    )
    assert invited.status_code == 202, invited.json
    assert invited.json["service_ids"] == [ids["BOUTIQUE"]]
    # the spaces opened on a service
    spaces = claire.get(f"/v1/structures/{sid}/spaces").json["spaces"]
    opened = claire.put(
        f"/v1/structures/{sid}/spaces",
        json={"spaces": [*spaces, {"space": "issued_solicitations", "service_id": "boutique"}]},
    )
    assert opened.status_code == 200, opened.json
    assert {"space": "issued_solicitations", "service_id": ids["BOUTIQUE"]} in [
        {"space": s["space"], "service_id": s["service_id"]} for s in opened.json["spaces"]
    ]


def test_another_structures_code_is_refused_like_an_unknown_id(api, bakery: Bakery, structure_of):
    claire, sid = bakery.claire, bakery.id
    theirs = other_structure_with(api, structure_of, "LIVRAISON")
    julien = person(api, "julien@login.example")
    for service in ("LIVRAISON", theirs):
        asked = julien.post(
            ATT, json={"structure_id": sid, "whole_structure": False, "service_ids": [service]}
        )
        assert asked.status_code == 422, asked.json
        assert asked.json["code"] == "unknown_service"
    lucie = attached(api, bakery, "lucie@login.example")
    for service in ("livraison", theirs):
        line = {"space": "issued_invoices", "service_id": service, "level": "consult"}
        sub = lucie.post(SUB, json={"structure_id": sid, "lines": [line]})
        assert sub.status_code == 422, sub.json
        assert sub.json["code"] == "unknown_service"
        added = claire.post(
            f"/v1/structures/{sid}/users/{lucie.user['id']}/services",
            json={"service_ids": [service]},
        )
        assert added.status_code in (409, 422), added.json
    spaces = claire.put(
        f"/v1/structures/{sid}/spaces",
        json={"spaces": [{"space": "issued_invoices", "service_id": "LIVRAISON"}]},
    )
    assert spaces.status_code == 422, spaces.json
    assert spaces.json["code"] == "unknown_service"
    assert "LIVRAISON" in spaces.json["detail"]


def test_an_unknown_code_is_named_in_the_line_that_has_it(api, bakery: Bakery):
    lucie = attached(api, bakery, "lucie@login.example")
    lines = [
        {"space": "issued_invoices", "service_id": None, "level": "consult"},
        {"space": "issued_invoices", "service_id": "NULLEPART", "level": "consult"},
    ]
    sub = lucie.post(SUB, json={"structure_id": bakery.id, "lines": lines})
    assert sub.status_code == 422, sub.json
    assert sub.json["code"] == "unknown_service"
    assert sub.json["errors"]["lines"] == {
        "1": [
            "line 2 (issued_invoices, service NULLEPART): No service NULLEPART in this structure."
        ]
    }


def test_an_inactive_service_named_by_code_is_refused(api, bakery: Bakery):
    julien = person(api, "julien@login.example")
    asked = julien.post(
        ATT, json={"structure_id": bakery.id, "whole_structure": False, "service_ids": ["ancien"]}
    )
    assert asked.status_code == 422, asked.json
    assert asked.json["code"] == "unknown_service"


@pytest.mark.parametrize("service", [True, "", "   ", 1.5, 0, {"code": "ATELIER"}, "A" * 65])
def test_a_service_is_an_integer_id_or_a_code_string(api, bakery: Bakery, service):
    julien = person(api, "julien@login.example")
    asked = julien.post(
        ATT, json={"structure_id": bakery.id, "whole_structure": False, "service_ids": [service]}
    )
    assert asked.status_code == 422, asked.json
    assert asked.json["code"] == "validation_failed"


@pytest.mark.parametrize("code", ["atelier", "Atelier", "ATELIER", " atelier "])
def test_a_code_that_differs_only_by_case_is_taken(bakery: Bakery, code):
    made = bakery.claire.post(
        f"/v1/structures/{bakery.id}/services", json={"code": code, "label": "Encore"}
    )
    assert made.status_code == 409, made.json
    assert made.json["code"] == "service_code_taken"
    assert "ATELIER" in made.json["detail"]


def test_another_structure_may_have_the_same_code_in_another_case(api, bakery, structure_of):
    other_structure_with(api, structure_of, "atelier")


def test_the_database_refuses_a_case_duplicate_code(rt, bakery: Bakery):
    duplicate = insert(Service).values(structure_id=bakery.id, code="atelier", label="Doublon")
    with rt.sessions() as s, pytest.raises(IntegrityError):
        s.execute(duplicate)


def test_a_check_names_the_service_by_its_code_in_any_case(api, rt, bakery: Bakery):
    lucie = attached(api, bakery, "lucie@login.example", services=["ATELIER"])
    asked = ask_subscription(lucie, bakery.id, ("works_invoices", "atelier", "modify"))
    assert process(bakery.claire, "subscription", asked["id"], "validation").status_code == 200
    at = revision(rt)
    for code in ("ATELIER", "atelier", "Atelier"):
        assert allowed(lucie, bakery.id, "works_invoices", "modify", service=code, at=at)
    assert not allowed(lucie, bakery.id, "works_invoices", "modify", service="BOUTIQUE", at=at)
    unknown = check(
        lucie, lucie.user["id"], bakery.id, "works_invoices", "modify", service="ailleurs"
    )
    assert not unknown["allowed"] and "unknown service" in unknown["reason"]
