"""Managers are told (issue 15): the structure's managers are mailed when a
request arrives, on an identifier change and when an attached account is
closed; people whose requests moved are mailed; the deactivation answer gives
the reactivation deadline; a manager's summary counts what waits for them.
"""

from __future__ import annotations

import datetime as dt

from authz.workflows import lifecycle
from models import utcnow
from tests.support.api import PASSWORD
from tests.support.membership import (
    ask_attachment,
    ask_subscription,
    attached,
    contact_of,
    next_siret,
    notifications,
    person,
    process,
)


def subjects(rt, who) -> list[str]:
    return [m.subject for m in notifications(rt, contact_of(who))]


def test_managers_but_the_requester_are_mailed_when_a_request_arrives(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    paul = attached(api, bakery, "paul@login.example", role="secondary")
    julien = person(api, "julien@login.example", "Julien", "Moreau")

    asked = ask_attachment(julien, sid, comment="Vendeur")
    for manager in (claire, paul):
        mail = notifications(rt, contact_of(manager))[-1]
        assert mail.subject.startswith("New attachment request on")
        assert "Julien Moreau" in mail.body and "Vendeur" in mail.body
        assert f"/v1/attachment-requests/{asked['id']}" in mail.body
    assert not any("New attachment request" in s for s in subjects(rt, julien))

    ask_subscription(paul, sid, ("issued_invoices", None, "consult"), comment="Pour facturer")
    mail = notifications(rt, contact_of(claire))[-1]
    assert mail.subject.startswith("New subscription request on")
    assert "Issued invoices (Factures émises), all services: consult" in mail.body
    assert "issued_invoices" not in mail.body
    assert not any("New subscription request" in s for s in subjects(rt, paul))


def test_an_identifier_change_tells_the_other_managers_and_whose_requests_moved(api, rt, bakery):
    claire, sid = bakery.claire, bakery.id
    paul = attached(api, bakery, "paul@login.example", role="secondary")
    julien = person(api, "julien@login.example")
    ask_attachment(julien, sid)
    siret = next_siret()
    r = claire.post(
        f"/v1/structures/{sid}/identifier-change",
        json={"identifier_type": "SIRET", "identifier_value": siret, "confirm": True},
    )
    assert r.status_code == 201, r.json
    told = notifications(rt, contact_of(paul))[-1]
    assert told.subject.endswith("identifier changed")
    assert siret in told.body and f"structure {r.json['id']}" in told.body
    assert not any(s.endswith("identifier changed") for s in subjects(rt, claire))
    moved = notifications(rt, contact_of(julien))[-1]
    assert moved.subject.endswith("moved")
    assert siret in moved.body


def test_deactivation_gives_the_deadline_and_closing_tells_the_managers(api, rt, bakery):
    claire = bakery.claire
    lucie = attached(api, bakery, "lucie@login.example")
    r = lucie.post("/v1/me/deactivation", json={"password": PASSWORD})
    assert r.status_code == 200, r.json
    until = dt.datetime.fromisoformat(r.json["reactivable_until"])
    assert dt.timedelta(days=59, hours=23) < until - utcnow() <= dt.timedelta(days=60)
    assert until.strftime("%Y-%m-%d") in notifications(rt, contact_of(lucie))[-1].body

    before = len(notifications(rt, contact_of(claire)))
    with rt.sessions() as s:
        assert lifecycle.close_expired_accounts(s, rt, now=utcnow() + dt.timedelta(days=61)) >= 1
    told = notifications(rt, contact_of(claire))[before:]
    assert [m.subject for m in told if lucie.user["login_email"] in m.body] == [
        "Ada Lovelace's account is closed"
    ]


def test_the_summary_counts_the_requests_of_others_per_managed_structure(
    api, rt, bakery, structure_of
):
    claire, sid = bakery.claire, bakery.id
    paul = attached(api, bakery, "paul@login.example", role="secondary")
    lucie = attached(api, bakery, "lucie@login.example")
    other = structure_of(paul, "Chez Paul")
    julien = person(api, "julien@login.example")
    ask_attachment(julien, sid)
    ask_subscription(lucie, sid, ("issued_invoices", None, "consult"))
    ask_subscription(paul, sid, ("issued_invoices", None, "consult"))

    def summary(who) -> dict:
        r = who.get("/v1/me/summary")
        assert r.status_code == 200, r.json
        return r.json

    mine = summary(paul)
    rows = {x["structure"]["id"]: x for x in mine["structures"]}
    assert {
        k: (v["role"], v["pending_attachment_requests"], v["pending_subscription_requests"])
        for k, v in rows.items()
    } == {sid: ("secondary", 1, 1), other["id"]: ("principal", 0, 0)}
    assert (mine["pending_attachment_requests"], mine["pending_subscription_requests"]) == (1, 1)
    # Claire also counts Paul's request; Lucie and Julien manage nothing.
    theirs = summary(claire)["structures"]
    assert [
        (x["pending_attachment_requests"], x["pending_subscription_requests"]) for x in theirs
    ] == [(1, 2)]
    assert summary(lucie)["structures"] == []
    assert summary(julien) == {
        "structures": [],
        "pending_attachment_requests": 0,
        "pending_subscription_requests": 0,
    }
    pending = claire.get(
        "/v1/attachment-requests", query_string={"structure_id": sid, "status": "pending"}
    ).json["items"][0]
    assert process(claire, "attachment", pending["id"], "validation").status_code == 200
    assert summary(claire)["pending_attachment_requests"] == 0
