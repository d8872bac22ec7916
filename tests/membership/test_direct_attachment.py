"""Attaching a user directly (DOMAIN.md, "What managers do" item 3): by login
email or id, with a role, a start date, a comment and the whole structure or
some services; only a manager may, and bad input is refused.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from authz import roles
from tests.support.api import attach_directly
from tests.support.membership import (
    DESIGNATION,
    SUB,
    allowed,
    check,
    contact_of,
    history,
    login_of,
    notifications,
    person,
    process,
)
from tests.support.rows import grant, key_headers, revision


def test_guide_direct_attachment_and_removal_end_to_end(api, rt, bakery):
    """Attach a user directly (by login email: role, start date, comment,
    services), then remove the attachment: the rights come and go."""
    claire, sid, svc = bakery.claire, bakery.id, bakery.services
    paul = person(
        api, "paul.bernard@login.example", "Paul", "Bernard", contact="paul@contact.example"
    )
    made = attach_directly(
        claire,
        sid,
        login_of(paul).capitalize(),
        role="secondary",
        service_ids=[svc["BOUTIQUE"]],
        valid_from=roles.today().isoformat(),
        comment="Responsable de la boutique",
    )
    assert [
        (a["user_id"], a["service_id"], a["role"], a["status"], a["valid_from"]) for a in made
    ] == [(paul.user["id"], svc["BOUTIQUE"], "secondary", "validated", roles.today().isoformat())]
    at = revision(rt)
    assert allowed(paul, sid, "my_account", "modify", service="BOUTIQUE", at=at)
    assert not allowed(paul, sid, "my_account", "modify", service="ATELIER", at=at)
    assert allowed(paul, sid, None, "attachments.create", at=at)
    # Paul's account is active: he was invited, and accepted (tests/support/consent.py).
    [mail] = notifications(rt, contact_of(paul))
    assert mail.subject == f"Invitation to join {DESIGNATION}"

    removed = claire.delete(f"/v1/structures/{sid}/attachments/{paul.user['id']}")
    assert removed.status_code == 200
    # The removal answers the revision it committed, in its body and header: a
    # check at that revision is sure to see it.
    after = removed.json["revision"]
    assert after == int(removed.headers["Authz-Revision"]) == revision(rt) > at
    decision = check(
        paul, paul.user["id"], sid, "my_account", "consult", service="BOUTIQUE", at=after
    )
    assert not decision["allowed"] and "no validated attachment" in decision["reason"]
    assert not allowed(paul, sid, None, "attachments.create", at=after)
    assert paul.get(f"/v1/structures/{sid}").status_code == 404
    assert notifications(rt, contact_of(paul))[-1].subject == f"Detached from {DESIGNATION}"
    entries = history(claire, sid, user_id=paul.user["id"])
    assert [(e["action"], e["comment"]) for e in entries] == [
        ("attachment.deleted", "Deleted"),
        ("invitation.accepted", "Invitation accepted"),
        ("invitation.created", "Invited"),
    ]


def test_an_attachment_grants_nothing_before_its_start_date(api, rt, bakery):
    """Direct attachment from a future date (with the structure's default spaces,
    validated at once): denied now, allowed from the start date."""
    claire, sid = bakery.claire, bakery.id
    assert (
        claire.patch(
            f"/v1/structures/{sid}", json={"default_spaces": ["issued_invoices"]}
        ).status_code
        == 200
    )
    paul = person(api, "paul@login.example")
    start = roles.today() + dt.timedelta(days=3)
    attach_directly(claire, sid, login_of(paul), valid_from=start.isoformat())
    [default] = claire.get(SUB, query_string={"structure_id": sid, "status": "pending"}).json[
        "items"
    ]
    assert (default["user_id"], default["origin"]) == (paul.user["id"], "default_spaces")
    assert process(claire, "subscription", default["id"], "validation").status_code == 200
    at = revision(rt)
    key = key_headers(rt)  # log-in tokens expire; a client key does not

    def decisions() -> list[bool]:
        return [
            check(api, paul.user["id"], sid, space, "consult", at=at, headers=key)["allowed"]
            for space in ("my_account", "issued_invoices")
        ]

    assert decisions() == [False, False]
    assert paul.get(f"/v1/structures/{sid}").status_code == 404
    moments = [
        (start - dt.timedelta(days=1), dt.time(23, 59), [False, False]),
        (start, dt.time(0, 1), [True, True]),
        (start + dt.timedelta(days=400), dt.time(12), [True, True]),
    ]  # no end date
    for day, time, expected in moments:
        with time_machine.travel(dt.datetime.combine(day, time, tzinfo=dt.UTC), tick=False):
            assert decisions() == expected, day


@pytest.mark.parametrize("role, status", [("simple", 403), ("technical", 403)])
def test_only_managers_attach_users_directly(api, rt, structure_of, role, status):
    ada = person(api, "ada@example.org")
    bob = person(api, "bob@example.org")
    carl = person(api, "carl@example.org")
    st = structure_of(ada)
    grant(rt, bob.user["id"], st["id"], role=role)
    body = {"user_id": carl.user["id"], "whole_structure": True}
    assert bob.post(f"/v1/structures/{st['id']}/attachments", json=body).status_code == status
    assert carl.post(f"/v1/structures/{st['id']}/attachments", json=body).status_code == 404


def test_direct_attachment_refuses_bad_input(api, rt, structure_of):
    ada = person(api, "ada@example.org")
    carl = person(api, "carl@example.org")
    st = structure_of(ada)
    url = f"/v1/structures/{st['id']}/attachments"
    today = roles.today()
    cases = [
        ({"user_id": 999, "whole_structure": True}, 404),
        ({"login_email": "nobody@example.org", "whole_structure": True}, 404),
        ({"whole_structure": True}, 422),
        (
            {
                "user_id": carl.user["id"],
                "login_email": login_of(carl),
                "whole_structure": True,
            },
            422,
        ),
        ({"user_id": carl.user["id"], "whole_structure": True, "role": "principal"}, 422),
        ({"user_id": carl.user["id"], "whole_structure": False, "service_ids": []}, 422),
        ({"user_id": carl.user["id"], "whole_structure": False, "service_ids": [999]}, 422),
        (
            {
                "user_id": carl.user["id"],
                "whole_structure": True,
                "valid_from": today.isoformat(),
                "valid_until": (today - dt.timedelta(days=1)).isoformat(),
            },
            422,
        ),
    ]
    for body, status in cases:
        r = ada.post(url, json=body)
        assert r.status_code == status, (body, r.json)
        assert r.content_type == "application/problem+json"
    assert ada.get(f"/v1/users/{carl.user['id']}/permissions").status_code == 404
