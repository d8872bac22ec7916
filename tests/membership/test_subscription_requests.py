"""Subscription requests (DOMAIN.md, "What managers do" item 2): the guide's
"demandes d'abonnement" end to end, which lines a user may ask for, a manager
switching a line's level, and the requests the structure's default spaces make
for a newcomer. The rules shared with attachment requests are in
test_request_processing.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models import Subscription
from tests.support.api import attach_directly
from tests.support.membership import (
    DESIGNATION,
    SUB,
    allowed,
    ask_attachment,
    ask_subscription,
    attached,
    contact_of,
    history,
    lines_of,
    login_of,
    notifications,
    person,
    process,
    snapshot,
)
from tests.support.rows import add_attachment, revision


def test_guide_subscription_requests_end_to_end(api, rt, bakery):
    """List the pending subscription requests, open one, validate it switching
    lines between consultation and modification with a comment, refuse
    another, validate and refuse in bulk; every requester is mailed."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = attached(api, bakery, "lucie.petit@login.example", contact="lucie@contact.example")
    asked = ask_subscription(
        lucie,
        sid,
        ("issued_invoices", None, "consult"),
        ("works_invoices", svc["ATELIER"], "modify"),
        comment="Pour les factures de l'atelier",
    )

    listed = claire.get(SUB, query_string={"structure_id": sid, "status": "pending"}).json
    assert [r["id"] for r in listed["items"]] == [asked["id"]]
    # Open it: the structure, the requester, the lines and the comment.
    opened = claire.get(f"{SUB}/{asked['id']}")
    assert opened.status_code == 200, opened.json
    opened = opened.json
    assert opened["structure"]["designation"] == DESIGNATION
    assert opened["requester"]["login_email"] == login_of(lucie)
    assert opened["requester"]["contact_email"] == contact_of(lucie)
    assert opened["request"]["comment"] == "Pour les factures de l'atelier"
    assert (opened["request"]["user_id"], opened["request"]["structure_id"]) == (
        lucie.user["id"],
        sid,
    )
    lines = {(line["space"], line["service_id"]): line for line in opened["request"]["lines"]}
    assert {k: v["level"] for k, v in lines.items()} == {
        ("issued_invoices", None): "consult",
        ("works_invoices", svc["ATELIER"]): "modify",
    }

    # Validate, switching each line to the other level, with a comment.
    done = claire.post(
        f"{SUB}/{asked['id']}/validation",
        json={
            "lines": [
                {"id": lines[("issued_invoices", None)]["id"], "level": "modify"},
                {"id": lines[("works_invoices", svc["ATELIER"])]["id"], "level": "consult"},
            ],
            "comment": "La consultation suffit pour l'atelier",
        },
    )
    assert done.status_code == 200, done.json
    assert done.json["status"] == "validated"
    assert done.json["manager_comment"] == "La consultation suffit pour l'atelier"
    at = revision(rt)
    expected = [  # (space, service, action, allowed)
        ("issued_invoices", None, "consult", True),
        ("issued_invoices", None, "modify", True),
        ("issued_invoices", None, "create", True),
        ("issued_invoices", "BOUTIQUE", "modify", True),
        ("works_invoices", "ATELIER", "consult", True),
        ("works_invoices", "ATELIER", "modify", False),
        ("works_invoices", "BOUTIQUE", "consult", False),
        ("issued_solicitations", None, "consult", False),
    ]
    got = [
        (space, service, action, allowed(lucie, sid, space, action, service=service, at=at))
        for space, service, action, _ in expected
    ]
    assert got == expected
    mail = notifications(rt, contact_of(lucie))[-1]
    assert mail.subject == f"Subscription on {DESIGNATION} validated"
    assert "La consultation suffit pour l'atelier" in mail.body

    # A second request is refused with a reason: nothing more is granted.
    again = ask_subscription(lucie, sid, ("issued_solicitations", None, "consult"))
    refused = claire.post(f"{SUB}/{again['id']}/refusal", json={"reason": "Pas utile"})
    assert refused.status_code == 200 and refused.json["status"] == "refused"
    assert not allowed(lucie, sid, "issued_solicitations", "consult", at=revision(rt))
    mail = notifications(rt, contact_of(lucie))[-1]
    assert mail.subject == f"Subscription on {DESIGNATION} refused"
    assert "Pas utile" in mail.body

    # Bulk: two people's requests validated as asked, two refused, at once.
    people = [attached(api, bakery, f"vendeur{i}@login.example") for i in range(4)]
    ids = [ask_subscription(p, sid, ("issued_solicitations", None, "modify"))["id"] for p in people]
    ok = claire.post(f"{SUB}/validations", json={"ids": ids[:2], "comment": "OK"})
    assert ok.status_code == 200, ok.json
    assert [(r["id"], r["ok"]) for r in ok.json["results"]] == [(i, True) for i in ids[:2]]
    no = claire.post(f"{SUB}/refusals", json={"ids": ids[2:], "reason": "Non"})
    assert [(r["id"], r["ok"]) for r in no.json["results"]] == [(i, True) for i in ids[2:]]
    at = revision(rt)
    assert [allowed(p, sid, "issued_solicitations", "modify", at=at) for p in people] == [
        True,
        True,
        False,
        False,
    ]
    for i, p in enumerate(people):
        subject = notifications(rt, contact_of(p))[-1].subject
        assert subject == f"Subscription on {DESIGNATION} {'validated' if i < 2 else 'refused'}"

    comments = [
        (e["action"], e["comment"])
        for e in history(claire, sid, action="subscription_request.")
        if e["action"] != "subscription_request.created"
    ]
    assert sorted(comments) == sorted(
        [("subscription_request.validated", "Validated")] * 3
        + [("subscription_request.refused", "Deactivated")] * 3
    )


def test_only_an_attached_user_asks_for_spaces_and_only_where_attached(api, rt, structure_of):
    ada = person(api, "ada@example.org")
    eve = person(api, "eve@example.org")
    st = structure_of(ada)
    one = ada.post(f"/v1/structures/{st['id']}/services", json={"code": "S1", "label": "1"}).json
    two = ada.post(f"/v1/structures/{st['id']}/services", json={"code": "S2", "label": "2"}).json
    ada.put(f"/v1/structures/{st['id']}/spaces", json={"spaces": [{"space": "issued_invoices"}]})
    line = {"space": "issued_invoices", "service_id": None, "level": "consult"}
    stranger = eve.post(
        "/v1/subscription-requests", json={"structure_id": st["id"], "lines": [line]}
    )
    assert stranger.status_code == 404
    add_attachment(rt, eve.user["id"], st["id"], service_id=one["id"])  # on S1 only
    outside = eve.post(
        "/v1/subscription-requests",
        json={"structure_id": st["id"], "lines": [{**line, "service_id": two["id"]}]},
    )
    assert outside.status_code == 422 and outside.json["code"] == "outside_attachment"
    whole = eve.post("/v1/subscription-requests", json={"structure_id": st["id"], "lines": [line]})
    assert whole.status_code == 422 and whole.json["code"] == "outside_attachment"
    ok = eve.post(
        "/v1/subscription-requests",
        json={"structure_id": st["id"], "lines": [{**line, "service_id": one["id"]}]},
    )
    assert ok.status_code == 201


# Lines a user may not ask for: (space, service, error code).
REFUSED_LINES = [
    ("legal_commitments", None, "space_not_opened"),
    ("works_invoices", "BOUTIQUE", "space_not_opened"),  # opened on ATELIER only
    ("works_invoices", None, "space_not_opened"),
    ("received_invoices", None, "public_only_space"),
    ("received_solicitations", "ATELIER", "public_only_space"),
    ("no_such_space", None, "unknown_space"),
    ("issued_invoices", "ANCIEN", "unknown_service"),  # an inactive service
]


def test_subscription_lines_only_name_spaces_opened_and_allowed_here(api, rt, bakery):
    lucie = attached(api, bakery, "lucie@login.example")
    before = snapshot(rt, bakery.id)
    for space, service, code in REFUSED_LINES:
        r = lucie.post(
            SUB,
            json={
                "structure_id": bakery.id,
                "lines": lines_of(
                    ("issued_invoices", None, "consult"),
                    (space, bakery.services[service] if service else None, "consult"),
                ),
            },
        )
        assert (r.status_code, r.json["code"]) == (422, code), (space, service, r.json)
    assert snapshot(rt, bakery.id) == before


def test_every_bad_line_is_reported_by_position_and_name(api, rt, bakery):
    """Several bad lines: each is named (position from 1, space, scope by its
    code) in `errors.lines` and in the detail; the code is the first's."""
    lucie = attached(api, bakery, "lucie@login.example")
    svc = bakery.services
    r = lucie.post(
        SUB,
        json={
            "structure_id": bakery.id,
            "lines": lines_of(
                ("issued_invoices", None, "consult"),
                ("works_invoices", svc["BOUTIQUE"], "consult"),
                ("issued_invoices", svc["ANCIEN"], "consult"),
                ("issued_invoices", None, "modify"),
            ),
        },
    )
    assert (r.status_code, r.json["code"]) == (422, "space_not_opened")
    assert r.json["errors"]["lines"] == {
        "1": [
            (
                "line 2 (works_invoices, service BOUTIQUE): The space 'works_invoices' is not "
                "opened on this structure nor on service BOUTIQUE."
            )
        ],
        "2": ["line 3 (issued_invoices, service ANCIEN): The service ANCIEN is inactive."],
        "3": ["line 4 (issued_invoices, all services): The same space and scope as line 1."],
    }
    assert "line 2" in r.json["detail"] and "line 4" in r.json["detail"]


def test_all_services_is_refused_to_a_user_attached_service_by_service_in_words(api, rt, bakery):
    """Attached to every active service, but not to the structure: "all
    services" stays reserved to the whole structure, and the refusal says so."""
    lucie = attached(api, bakery, "lucie@login.example", services=["ATELIER", "BOUTIQUE"])
    r = lucie.post(
        SUB,
        json={"structure_id": bakery.id, "lines": lines_of(("issued_invoices", None, "consult"))},
    )
    assert (r.status_code, r.json["code"]) == (422, "outside_attachment")
    assert r.json["errors"]["lines"]["0"] == [
        (
            "line 1 (issued_invoices, all services): You are attached to some services only "
            '(ATELIER, BOUTIQUE): ask for each of them; "all services" needs an attachment '
            "to the whole structure."
        )
    ]
    assert "None" not in r.json["detail"]


def test_a_manager_switching_a_line_to_modify_grants_modify(api, rt, bakery):
    lucie = attached(api, bakery, "lucie@login.example")
    req = ask_subscription(
        lucie,
        bakery.id,
        ("issued_invoices", None, "consult"),
        ("issued_solicitations", None, "consult"),
    )
    line = next(li for li in req["lines"] if li["space"] == "issued_invoices")
    unknown = process(
        bakery.claire,
        "subscription",
        req["id"],
        "validation",
        lines=[{"id": 999_999, "level": "modify"}],
    )
    assert (unknown.status_code, unknown.json["code"]) == (422, "unknown_line")
    r = process(
        bakery.claire,
        "subscription",
        req["id"],
        "validation",
        lines=[{"id": line["id"], "level": "modify"}],
    )
    assert r.status_code == 200, r.json
    assert {li["space"]: li["level"] for li in r.json["lines"]} == {
        "issued_invoices": "modify",
        "issued_solicitations": "consult",
    }
    at = revision(rt)
    assert allowed(lucie, bakery.id, "issued_invoices", "modify", at=at)
    assert allowed(lucie, bakery.id, "issued_invoices", "create", at=at)
    assert not allowed(lucie, bakery.id, "issued_solicitations", "modify", at=at)
    with rt.sessions() as s:
        levels = {
            sub.space_code: sub.level
            for sub in s.scalars(
                select(Subscription).where(Subscription.user_id == lucie.user["id"])
            )
        }
    assert levels == {"issued_invoices": "modify", "issued_solicitations": "consult"}


def test_a_line_whose_space_was_closed_since_cannot_be_validated(api, rt, bakery):
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    lucie = attached(api, bakery, "lucie@login.example")
    req = ask_subscription(lucie, sid, ("works_invoices", svc["ATELIER"], "consult"))
    spaces = [
        e
        for e in claire.get(f"/v1/structures/{sid}/spaces").json["spaces"]
        if e["space"] != "works_invoices"
    ]
    assert claire.put(f"/v1/structures/{sid}/spaces", json={"spaces": spaces}).status_code == 200
    before = snapshot(rt, sid)
    r = process(claire, "subscription", req["id"], "validation")
    assert (r.status_code, r.json["code"]) == (422, "space_not_opened")
    assert snapshot(rt, sid) == before


@pytest.mark.parametrize("how", ["request", "direct"])
def test_default_spaces_become_a_pending_subscription_request(api, rt, bakery, how):
    claire, sid = bakery.claire, bakery.id
    r = claire.patch(f"/v1/structures/{sid}", json={"default_spaces": ["issued_invoices"]})
    assert r.status_code == 200 and r.json["default_spaces"] == ["issued_invoices"]
    for scope in (None, "BOUTIQUE"):
        service_ids = [bakery.services[scope]] if scope else None
        nina = person(api, f"nina.{scope}@login.example")
        if how == "request":
            req = ask_attachment(nina, sid, service_ids)
            assert process(claire, "attachment", req["id"], "validation").status_code == 200
        else:
            attach_directly(claire, sid, login_of(nina), service_ids=service_ids)
        [made] = claire.get(SUB, query_string={"structure_id": sid, "status": "pending"}).json[
            "items"
        ]
        assert (made["user_id"], made["origin"]) == (nina.user["id"], "default_spaces")
        assert [(li["space"], li["service_id"], li["level"]) for li in made["lines"]] == [
            ("issued_invoices", service_ids[0] if service_ids else None, "consult")
        ]
        assert [r["id"] for r in nina.get(SUB, query_string={"mine": True}).json["items"]] == [
            made["id"]
        ]
        # Asked, not granted: a manager still decides.
        assert not allowed(nina, sid, "issued_invoices", "consult", service=scope, at=revision(rt))
        assert process(claire, "subscription", made["id"], "validation").status_code == 200
        assert allowed(nina, sid, "issued_invoices", "consult", service=scope, at=revision(rt))


def test_closing_a_default_space_everywhere_removes_it_from_the_defaults(api, rt, bakery):
    """Issue 15: a default space must be opened; closing it leaves the defaults
    with it (in the same write, recorded in the history), and a newcomer then
    gets no request for it."""
    claire, sid = bakery.claire, bakery.id
    set_defaults = claire.patch(
        f"/v1/structures/{sid}", json={"default_spaces": ["issued_invoices", "works_invoices"]}
    )
    assert set_defaults.status_code == 200, set_defaults.json
    spaces = claire.get(f"/v1/structures/{sid}/spaces").json["spaces"]
    # works_invoices is opened on ATELIER only: closing it there closes it everywhere
    kept = [e for e in spaces if e["space"] != "works_invoices"]
    closed = claire.put(f"/v1/structures/{sid}/spaces", json={"spaces": kept})
    assert closed.status_code == 200, closed.json
    assert claire.get(f"/v1/structures/{sid}").json["default_spaces"] == ["issued_invoices"]
    [entry] = history(claire, sid, action="spaces.updated")[:1]
    detail = claire.get(f"/v1/history/{entry['id']}").json
    assert detail["after"]["default_spaces_removed"] == ["works_invoices"]

    nina = person(api, "nina@login.example")
    attach_directly(claire, sid, login_of(nina), service_ids=[bakery.services["ATELIER"]])
    [made] = claire.get(SUB, query_string={"structure_id": sid, "status": "pending"}).json["items"]
    assert [li["space"] for li in made["lines"]] == ["issued_invoices"]


def test_closing_a_default_space_on_one_scope_only_keeps_it_a_default(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    spaces = claire.get(f"/v1/structures/{sid}/spaces").json["spaces"]
    both = [*spaces, {"space": "issued_solicitations", "service_id": bakery.services["BOUTIQUE"]}]
    assert claire.put(f"/v1/structures/{sid}/spaces", json={"spaces": both}).status_code == 200
    r = claire.patch(f"/v1/structures/{sid}", json={"default_spaces": ["issued_solicitations"]})
    assert r.status_code == 200, r.json
    structure_level = [
        e for e in both if not (e["space"] == "issued_solicitations" and e["service_id"] is None)
    ]
    assert len(structure_level) == len(both) - 1  # it was opened on the structure too
    put = claire.put(f"/v1/structures/{sid}/spaces", json={"spaces": structure_level})
    assert put.status_code == 200, put.json
    assert claire.get(f"/v1/structures/{sid}").json["default_spaces"] == ["issued_solicitations"]
