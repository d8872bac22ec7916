"""Attachment requests (DOMAIN.md, "What managers do" item 1): the guide's
"demandes de rattachement" end to end, what a manager sees when opening one,
and what validation lets the manager choose (role, services, start date).
The rules shared with subscription requests are in test_request_processing.py.
"""

from __future__ import annotations

import datetime as dt

import time_machine

from authz import roles
from tests.support.api import attach_directly
from tests.support.membership import (
    ATT,
    DESIGNATION,
    allowed,
    ask_attachment,
    attached,
    check,
    contact_of,
    history,
    login_of,
    notifications,
    pending_request,
    person,
    process,
    snapshot,
)
from tests.support.rows import add_attachment, key_headers, revision


def test_guide_attachment_requests_end_to_end(api, rt, bakery):
    """List the pending requests, open one, validate it changing role and
    services, refuse another with a reason, validate and refuse in bulk."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    julien = person(
        api, "julien.moreau@login.example", "Julien", "Moreau", contact="julien@contact.example"
    )

    # The user finds the structure by its identifier and asks for the shop.
    found = julien.get(
        "/v1/structures/lookup",
        query_string={"identifier_type": "SIRET", "identifier_value": bakery.siret},
    )
    assert found.status_code == 200 and found.json["id"] == sid
    assert sorted(s["code"] for s in found.json["services"]) == ["ATELIER", "BOUTIQUE"]
    asked = ask_attachment(julien, sid, [svc["BOUTIQUE"]], "Vendeur à la boutique")
    assert asked["status"] == "pending" and asked["service_ids"] == [svc["BOUTIQUE"]]

    # The manager lists the pending requests of the structure…
    listed = claire.get(ATT, query_string={"structure_id": sid, "status": "pending"}).json
    assert [r["id"] for r in listed["items"]] == [asked["id"]]
    # …opens one: structure, requester, comment, every active service and its status…
    detail = claire.get(f"{ATT}/{asked['id']}").json
    assert detail["structure"]["designation"] == DESIGNATION
    assert detail["requester"]["login_email"] == login_of(julien)
    assert detail["requester"]["last_name"] == "Moreau"
    assert detail["request"]["comment"] == "Vendeur à la boutique"
    assert [(s["code"], s["status"], s["preselected"]) for s in detail["services"]] == [
        ("ATELIER", "none", False),
        ("BOUTIQUE", "pending", True),
    ]
    # …and validates it, making him a secondary manager of both services.
    before = revision(rt)
    done = claire.post(
        f"{ATT}/{asked['id']}/validation",
        json={
            "role": "secondary",
            "whole_structure": False,
            "service_ids": [svc["ATELIER"], svc["BOUTIQUE"]],
            "comment": "Bienvenue",
        },
    )
    assert done.status_code == 200, done.json
    assert (done.json["status"], done.json["role"]) == ("validated", "secondary")
    at = revision(rt)
    assert at == before + 1
    for service in ("ATELIER", "BOUTIQUE"):
        assert allowed(julien, sid, "my_account", "modify", service=service, at=at)
        assert allowed(julien, sid, "manager_activities", "consult", service=service, at=at)
        assert not allowed(julien, sid, "issued_invoices", "consult", service=service, at=at)
    assert not allowed(julien, sid, "my_account", "consult", at=at)  # not the whole structure
    assert allowed(julien, sid, None, "attachment_requests.process", at=at)
    assert julien.get(f"/v1/structures/{sid}").status_code == 200
    [mail] = notifications(rt, contact_of(julien))
    assert mail.subject == f"Attachment to {DESIGNATION} validated"

    # Another person asks for the whole structure: refused, with a reason.
    lucie = person(api, "lucie.petit@login.example", "Lucie", "Petit")
    asked = ask_attachment(lucie, sid, comment="Stagiaire")
    refused = claire.post(
        f"{ATT}/{asked['id']}/refusal", json={"reason": "Aucun stage prévu cette année"}
    )
    assert refused.status_code == 200, refused.json
    assert (refused.json["status"], refused.json["reason"]) == (
        "refused",
        "Aucun stage prévu cette année",
    )
    assert not allowed(lucie, sid, "my_account", "consult", at=revision(rt))
    assert lucie.get(f"/v1/structures/{sid}").status_code == 404

    # Bulk: four more people ask; two are validated at once, two refused at once.
    people = [person(api, f"vendeur{i}@login.example") for i in range(4)]
    ids = [ask_attachment(p, sid)["id"] for p in people]
    ok = claire.post(f"{ATT}/validations", json={"ids": ids[:2], "role": "simple"})
    assert ok.status_code == 200, ok.json
    assert [
        (r["id"], r["ok"], r["code"], r["attachment"]["role"], r["attachment"]["whole_structure"])
        for r in ok.json["results"]
    ] == [(i, True, None, "simple", True) for i in ids[:2]]
    assert isinstance(ok.json["revision"], int)
    no = claire.post(f"{ATT}/refusals", json={"ids": ids[2:], "reason": "Effectif complet"})
    assert [(r["id"], r["ok"]) for r in no.json["results"]] == [(i, True) for i in ids[2:]]
    at = revision(rt)
    assert [allowed(p, sid, "my_account", "modify", at=at) for p in people] == [
        True,
        True,
        False,
        False,
    ]
    assert (
        claire.get(ATT, query_string={"structure_id": sid, "status": "pending"}).json["total"] == 0
    )

    comments = [
        (e["action"], e["comment"])
        for e in history(claire, sid, action="attachment_request.")
        if e["action"] != "attachment_request.created"
    ]
    assert sorted(comments) == sorted(
        [("attachment_request.validated", "Validated")] * 3
        + [("attachment_request.refused", "Refused")] * 3
    )


def test_request_detail_lists_active_services_with_the_requesters_status(api, rt, bakery):
    """Every ACTIVE service with the requester's status on it; pending and
    validated ones are preselected."""
    claire, sid, svc = bakery.claire, bakery.id, dict(bakery.services)
    for code in ("CAISSE", "LIVRAISON", "EXTRA"):
        svc[code] = claire.post(
            f"/v1/structures/{sid}/services", json={"code": code, "label": code.title()}
        ).json["id"]
    marc = person(api, "marc@login.example")
    attach_directly(claire, sid, login_of(marc), service_ids=[svc["ATELIER"]])
    first = ask_attachment(marc, sid, [svc["BOUTIQUE"]])
    assert process(claire, "attachment", first["id"], "refusal").status_code == 200
    add_attachment(
        rt, marc.user["id"], sid, "simple", service_id=svc["CAISSE"], status="deactivated"
    )
    second = ask_attachment(marc, sid, [svc["LIVRAISON"]], comment="Et les livraisons")

    detail = claire.get(f"{ATT}/{second['id']}")
    assert detail.status_code == 200, detail.json
    assert detail.json["request"]["comment"] == "Et les livraisons"
    assert detail.json["whole_structure_status"] == "none"
    assert [(s["code"], s["status"], s["preselected"]) for s in detail.json["services"]] == [
        ("ATELIER", "validated", True),
        ("BOUTIQUE", "refused", False),
        ("CAISSE", "deactivated", False),
        ("EXTRA", "none", False),
        ("LIVRAISON", "pending", True),
    ]  # ANCIEN, inactive, is not listed
    # The requester may read their own request.
    assert marc.get(f"{ATT}/{second['id']}").status_code == 200


def test_validation_keeps_the_requesters_role_unless_the_manager_changes_it(api, rt, bakery):
    """The role is the requester's current one (simple for a newcomer) unless
    the manager picks another: validating a secondary manager's request for one
    more service, unit or bulk, does not demote them."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    paul = attached(api, bakery, "paul@login.example", role="secondary", services=["ATELIER"])
    anne = attached(api, bakery, "anne@login.example", role="secondary", services=["ATELIER"])
    nina = person(api, "nina@login.example")
    unit = process(
        claire, "attachment", ask_attachment(paul, sid, [svc["BOUTIQUE"]])["id"], "validation"
    )
    assert (unit.status_code, unit.json["role"]) == (200, "secondary"), unit.json
    ids = [ask_attachment(anne, sid, [svc["BOUTIQUE"]])["id"], ask_attachment(nina, sid)["id"]]
    r = claire.post(f"{ATT}/validations", json={"ids": ids})
    assert [o["ok"] for o in r.json["results"]] == [True, True], r.json
    at = revision(rt)
    for who, manager in ((paul, True), (anne, True), (nina, False)):
        for service in ("ATELIER", "BOUTIQUE") if manager else (None,):
            assert (
                allowed(who, sid, "manager_activities", "consult", service=service, at=at)
                is manager
            )
        assert allowed(who, sid, None, "attachment_requests.process", at=at) is manager
    # A manager who means to change the role says so.
    demoted = person(api, "marc@login.example")
    attach_directly(claire, sid, login_of(demoted), role="secondary", service_ids=[svc["ATELIER"]])
    req = ask_attachment(demoted, sid, [svc["BOUTIQUE"]])
    r = process(claire, "attachment", req["id"], "validation", role="simple")
    assert (r.status_code, r.json["role"]) == (200, "simple")
    assert not allowed(demoted, sid, None, "attachment_requests.process", at=revision(rt))


def test_the_manager_chooses_the_services_and_role_at_validation(api, rt, bakery, structure_of):
    """Services unchecked at validation are refused, services added are granted;
    only services of this structure and the roles secondary or simple are taken."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    bob = person(api, "bob@login.example")
    theirs = structure_of(bob, "Bob SARL")
    foreign = bob.post(
        f"/v1/structures/{theirs['id']}/services", json={"code": "X", "label": "X"}
    ).json["id"]
    marc = person(api, "marc@login.example")
    req = ask_attachment(marc, sid, [svc["ATELIER"], svc["BOUTIQUE"]])
    before = snapshot(rt, sid)
    for body, code in (
        ({"whole_structure": False, "service_ids": [foreign]}, "unknown_service"),
        ({"whole_structure": False, "service_ids": [svc["ANCIEN"]]}, "unknown_service"),
        ({"whole_structure": False, "service_ids": []}, "invalid_scope"),
        ({"role": "principal"}, "validation_failed"),
        ({"role": "technical"}, "validation_failed"),
    ):
        r = process(claire, "attachment", req["id"], "validation", **body)
        assert (r.status_code, r.json["code"]) == (422, code), body
    assert snapshot(rt, sid) == before
    r = process(
        claire,
        "attachment",
        req["id"],
        "validation",
        whole_structure=False,
        service_ids=[svc["ATELIER"]],
        role="secondary",
    )
    assert r.status_code == 200, r.json
    at = revision(rt)
    assert allowed(marc, sid, "my_account", "consult", service="ATELIER", at=at)
    assert not allowed(marc, sid, "my_account", "consult", service="BOUTIQUE", at=at)
    detail = claire.get(f"{ATT}/{req['id']}").json
    assert {(s["code"], s["status"]) for s in detail["services"]} == {
        ("ATELIER", "validated"),
        ("BOUTIQUE", "refused"),
    }
    # A whole-structure request validated for one service only.
    nina = person(api, "nina@login.example")
    req = ask_attachment(nina, sid)
    r = process(
        claire,
        "attachment",
        req["id"],
        "validation",
        whole_structure=False,
        service_ids=[svc["BOUTIQUE"]],
    )
    assert r.status_code == 200, r.json
    at = revision(rt)
    assert allowed(nina, sid, "my_account", "consult", service="BOUTIQUE", at=at)
    assert not allowed(nina, sid, "my_account", "consult", at=at)


def test_an_attachment_request_validated_from_a_later_date_grants_from_that_date(api, rt, bakery):
    julien, req = pending_request("attachment", api, bakery, "julien@login.example")
    start = roles.today() + dt.timedelta(days=2)
    r = process(bakery.claire, "attachment", req["id"], "validation", valid_from=start.isoformat())
    assert r.status_code == 200, r.json
    at, key = revision(rt), key_headers(rt)

    def may_consult() -> bool:
        return check(
            api, julien.user["id"], bakery.id, "my_account", "consult", at=at, headers=key
        )["allowed"]

    held = r.json["attachment"]
    assert (held["role"], held["whole_structure"], held["service_ids"]) == ("simple", True, [])
    assert [(a["service_id"], a["valid_from"]) for a in held["attachments"]] == [
        (None, start.isoformat())
    ]
    assert not may_consult()
    with time_machine.travel(dt.datetime.combine(start, dt.time(8), tzinfo=dt.UTC), tick=False):
        assert may_consult()


def test_a_validation_answers_with_everything_the_user_now_holds(api, rt, bakery):
    """Asked for one more service, the answer lists every service held (the one
    validated earlier too), the role and the dates — unit and bulk."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    marc = person(api, "marc@login.example")
    first = ask_attachment(marc, sid, [svc["ATELIER"]])
    assert process(claire, "attachment", first["id"], "validation").status_code == 200
    more = ask_attachment(marc, sid, [svc["BOUTIQUE"]])
    r = process(claire, "attachment", more["id"], "validation", role="secondary")
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["service_ids"]) == ("validated", [svc["BOUTIQUE"]])
    held = r.json["attachment"]
    assert held["user_id"] == marc.user["id"] and held["structure_id"] == sid
    assert (held["role"], held["whole_structure"]) == ("secondary", False)
    assert held["service_ids"] == sorted([svc["ATELIER"], svc["BOUTIQUE"]])
    assert [(a["service_code"], a["role"], a["status"]) for a in held["attachments"]] == [
        ("ATELIER", "secondary", "validated"),
        ("BOUTIQUE", "secondary", "validated"),
    ]
    assert all(a["valid_from"] == roles.today().isoformat() for a in held["attachments"])
    assert r.json["revision"] == revision(rt)

    # Bulk: each success carries what its user holds; a failure carries nothing.
    nina = person(api, "nina@login.example")
    asked = ask_attachment(nina, sid, [svc["BOUTIQUE"]])
    bulk = claire.post(f"{ATT}/validations", json={"ids": [asked["id"], more["id"]]})
    assert bulk.status_code == 200, bulk.json
    done, again = bulk.json["results"]
    assert done["attachment"]["service_ids"] == [svc["BOUTIQUE"]]
    assert (again["ok"], again["code"], "attachment" in again) == (
        False,
        "request_processed",
        False,
    )


def test_a_start_date_in_the_past_is_refused_and_changes_nothing(api, rt, bakery):
    """Validation, direct attachment and added services refuse a back-dated
    start (422 start_in_past); today is accepted."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    yesterday = (roles.today() - dt.timedelta(days=1)).isoformat()
    julien, req = pending_request("attachment", api, bakery, "julien@login.example")
    before = snapshot(rt, sid)
    r = process(claire, "attachment", req["id"], "validation", valid_from=yesterday)
    assert (r.status_code, r.json["code"]) == (422, "start_in_past"), r.json
    assert "valid_from" in r.json["errors"]
    r = claire.post(
        f"/v1/structures/{sid}/attachments",
        json={"user_id": julien.user["id"], "whole_structure": True, "valid_from": yesterday},
    )
    assert (r.status_code, r.json["code"]) == (422, "start_in_past"), r.json
    assert snapshot(rt, sid) == before
    marc = person(api, "marc@login.example")
    asked = ask_attachment(marc, sid, [svc["ATELIER"]])
    assert process(claire, "attachment", asked["id"], "validation").status_code == 200
    added = claire.post(
        f"/v1/structures/{sid}/users/{marc.user['id']}/services",
        json={"service_ids": [svc["BOUTIQUE"]], "valid_from": yesterday},
    )
    assert (added.status_code, added.json["code"]) == (422, "start_in_past"), added.json
    today = roles.today().isoformat()
    r = process(claire, "attachment", req["id"], "validation", valid_from=today)
    assert r.status_code == 200, r.json
    assert r.json["attachment"]["attachments"][0]["valid_from"] == today
